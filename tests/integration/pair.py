"""Two real workers on one stack (fresh topics, a migrated schema, seeded tiers, the recording
Stripe double) and a Kafka client for them: what the HTTP-level test modules share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from app.settings import Settings
from app.tiers_seed import seed_tiers
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, worker_env
from tests.integration.stripe_double import StripeDouble

BOTH = (0, 1)


def started(
    services: Services,
    prefix: str,
    module_schema: str,
    double: StripeDouble,
    tmp: Path,
    **env: str,
) -> Iterator[list[Worker]]:
    """For a module fixture: `yield from started(...)` gives both workers, stopped after."""
    settings = worker_env(
        services,
        prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
        WEB_HOST="127.0.0.1",
        **env,
    )
    asyncio.run(seed_tiers(Settings.from_env(settings)))
    ws = [Worker(settings, tmp / f"w{i}", tmp / f"w{i}.log").start() for i in BOTH]
    try:
        yield ws
    finally:
        for w in ws:
            w.stop()


@contextlib.asynccontextmanager
async def kafka(services: Services, prefix: str, workers: list[Worker]) -> AsyncIterator[Kafka]:
    """A Kafka client for the workers' topics (it also watches that they stay up)."""
    k = Kafka(services, prefix)
    k.workers.extend(workers)
    await k.start()
    try:
        yield k
    finally:
        await k.stop()
