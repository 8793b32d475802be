"""Shared fixtures: each test gets its own topic names and its own database schema."""

from __future__ import annotations

import uuid

import pytest


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_prefix() -> str:
    return _unique("t") + "."
