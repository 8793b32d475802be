"""The live risk feed through a Redis restart: streams on both workers say the fan-out is down,
keep showing changes by polling the account's owner, and go back to push by themselves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.integration import pair
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker
from tests.integration.http_support import Http, auth
from tests.integration.risk_support import SseClient
from tests.integration.sink_support import stack
from tests.integration.stripe_double import StripeDouble

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

BOTH = (0, 1)
USER = "usr_risk_chaos"
OWNER = auth(USER)


@pytest.fixture(scope="module")
def workers(
    services: Services,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, list[Worker]]]:
    prefix = s.uid("riskchaos") + "."
    for ws in pair.started(
        services, prefix, module_schema, double, tmp_path_factory.mktemp("riskchaos")
    ):
        yield prefix, ws


@pytest.fixture
async def kafka(services: Services, workers: tuple[str, list[Worker]]) -> AsyncIterator[Kafka]:
    prefix, ws = workers
    async with pair.kafka(services, prefix, ws) as k:
        yield k


async def test_streams_fall_back_to_polling_while_redis_is_down_and_recover(
    workers: tuple[str, list[Worker]], kafka: Kafka
) -> None:
    _, ws = workers
    async with Http(ws) as http:
        await http.wait_healthy()
        asm = s.uid("asm")
        await kafka.send("assessment.completed", asm, s.assessment(asm, USER))
        acct = s.account_of(asm)
        await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
        await kafka.send("trades", acct, s.opened(acct, "p-1", "1000.00"))
        path = f"/funded-accounts/{acct}/risk/stream"
        clients = [await SseClient(http.url(w, path), OWNER).start() for w in BOTH]
        try:
            for c in clients:
                await c.wait_for(
                    lambda e: e.type == "risk" and len(e.data["positions"]) == 1,
                    what="the opened position",
                )
            await asyncio.to_thread(stack, "down", "redis")
            try:
                for c in clients:
                    await c.wait_for(
                        lambda e: e.type == "feed" and e.data.get("redis") == "down",
                        what="the feed saying Redis is down",
                    )
                await kafka.send("trades", acct, s.updated(acct, "p-1", "-123.45", None))
                for c in clients:
                    await c.wait_for(
                        lambda e: e.type == "risk" and e.data["unrealized_pnl"] == "-123.45",
                        what="a change while Redis is down (polled)",
                    )
            finally:
                await asyncio.to_thread(stack, "up", "redis")
            for c in clients:
                await c.wait_for(
                    lambda e: e.type == "feed" and e.data.get("redis") == "up",
                    timeout=30,
                    what="the feed back",
                )
            await kafka.send("trades", acct, s.updated(acct, "p-1", "-200.00", None))
            for c in clients:
                await c.wait_for(
                    lambda e: e.type == "risk" and e.data["unrealized_pnl"] == "-200.00",
                    what="a change pushed again",
                )
                versions = [int(e.id or 0) for e in c.events if e.type == "risk"]
                assert versions == sorted(set(versions))
        finally:
            for c in clients:
                await c.close()
