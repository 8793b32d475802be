"""The chaos tests use the integration tests' services and fixtures (the real local stack)."""

from tests.integration.conftest import double, module_schema, services

__all__ = ["double", "module_schema", "services"]
