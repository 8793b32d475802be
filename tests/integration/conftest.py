"""Services for integration tests.

Where a Docker engine answers, the services may come from testcontainers; here, and in CI,
there is none, and the tests use the local stack started by `scripts/stack.sh up`, found through
the environment that `scripts/stack.sh env` prints.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest

from app.db import migrate
from tests.integration.stripe_double import StripeDouble


@dataclass(frozen=True)
class Services:
    kafka: str
    database_url: str
    redis_url: str
    stripe_api_base: str


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _from_testcontainers(stack: list[object]) -> Services:  # pragma: no cover - needs Docker
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    pg = PostgresContainer("postgres:15", dbname="fundedflow", driver="asyncpg")
    redis = RedisContainer("redis:7")
    for c in (kafka, pg, redis):
        c.start()
        stack.append(c)
    return Services(
        kafka=kafka.get_bootstrap_server(),
        database_url=pg.get_connection_url(),
        redis_url=f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
        stripe_api_base=os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
    )


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    env = os.environ
    kafka = env.get("KAFKA_BOOTSTRAP_SERVERS")
    if kafka is None and _docker_available():  # pragma: no cover - needs Docker
        started: list[object] = []
        try:
            yield _from_testcontainers(started)
        finally:
            for c in started:
                c.stop()  # type: ignore[attr-defined]
        return
    s = Services(
        kafka=kafka or "127.0.0.1:9092",
        database_url=env.get(
            "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fundedflow"
        ),
        redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        stripe_api_base=env.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
    )
    host, _, port = s.kafka.split(",")[0].partition(":")
    if not _answers(host, int(port or 9092)):
        pytest.fail(
            f"Kafka does not answer at {s.kafka}: start the local stack with "
            "`scripts/stack.sh up` (or run the suite with `scripts/test.sh`)"
        )
    yield s


@pytest.fixture
def db_schema(services: Services) -> Iterator[str]:
    """A fresh schema, migrated to head, dropped afterwards."""
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = services.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    migrate(services.database_url, schema=schema)
    try:
        yield schema
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


def pg_dsn(services: Services) -> str:
    return services.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def host_port(url: str) -> tuple[str, int]:
    u = urlparse(url)
    return u.hostname or "127.0.0.1", u.port or 0


@pytest.fixture
async def pg(services: Services) -> AsyncIterator[object]:
    import asyncpg

    conn = await asyncpg.connect(pg_dsn(services))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def module_schema(services: Services) -> Iterator[str]:
    """A migrated schema for the workers of one test module (their sink writes there)."""
    import asyncpg

    schema = f"w_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn(services))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    migrate(services.database_url, schema=schema)
    try:
        yield schema
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="module")
def double() -> Iterator[StripeDouble]:
    """A recording Stripe double for the workers of one test module."""
    d = StripeDouble()
    d.start()
    yield d
    d.stop()
