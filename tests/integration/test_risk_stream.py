"""The live risk feed end to end: two real workers, Redis pub/sub, every stream read on both.

Whichever worker owns the account, one of the two is not its owner: each assertion below holds
for the streams of both workers, so it holds on the non-owner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from app.riskfeed import channel
from tests.integration import pair
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker
from tests.integration.http_support import Http, auth
from tests.integration.risk_support import SseClient
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

BOTH = (0, 1)
USER = "usr_risk"
OWNER = auth(USER)
OTHER = auth("usr_someone_else")
TIER = "funded-100k-static-10-daily-5-prague"  # daily loss 5,000.00, max loss 10,000.00


@pytest.fixture(scope="module")
def prefix() -> str:
    return s.uid("risk") + "."


@pytest.fixture(scope="module")
def workers(
    services: Services,
    prefix: str,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Worker]]:
    yield from pair.started(
        services, prefix, module_schema, double, tmp_path_factory.mktemp("risk")
    )


@pytest.fixture
async def http(workers: list[Worker]) -> AsyncIterator[Http]:
    async with Http(workers) as h:
        await h.wait_healthy()
        yield h


@pytest.fixture
async def kafka(services: Services, prefix: str, workers: list[Worker]) -> AsyncIterator[Kafka]:
    async with pair.kafka(services, prefix, workers) as k:
        yield k


async def new_account(kafka: Kafka, http: Http) -> str:
    asm = s.uid("asm")
    await kafka.send("assessment.completed", asm, s.assessment(asm, USER, TIER))
    acct = s.account_of(asm)
    await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
    await kafka.send("trades", acct, s.opened(acct, "p-1", "1000.00"))
    await http.account_when(0, acct, OWNER, lambda a: len(a["positions"]) == 1)
    return acct


def streams(http: Http, acct: str, headers: dict[str, str]) -> list[SseClient]:
    path = f"/funded-accounts/{acct}/risk/stream"
    return [SseClient(http.url(w, path), headers) for w in BOTH]


async def test_each_band_change_reaches_both_workers_streams_in_order(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http)
    clients = [await c.start() for c in streams(http, acct, OWNER)]
    try:
        for c in clients:
            first = await c.wait_for(lambda e: e.type == "risk", what="the first view")
            assert first.data["account_id"] == acct and first.id == str(first.data["version"])
            assert first.data["rules"]["daily_loss"]["status"] == "safe"
            assert first.data["trading_day"]["resets_at"].endswith("Z")
        # daily loss 5,000.00: -4,000.00 is 0.8 of it (warning), -4,500.00 danger, 0 safe.
        bands = [("-4000.00", "warning"), ("-4500.00", "danger"), ("0.00", "safe")]
        for pnl, band in bands:
            sent = time.monotonic()
            marks = [len(c.events) for c in clients]
            await kafka.send("trades", acct, s.updated(acct, "p-1", pnl, None))
            for c, mark in zip(clients, marks, strict=True):
                event = await c.wait_for(
                    lambda e, b=band: (
                        e.type == "risk" and e.data["rules"]["daily_loss"]["status"] == b
                    ),
                    what=f"the {band} band",
                    since=mark,
                )
                assert event.data["unrealized_pnl"] == pnl
            assert time.monotonic() - sent < 10
        for c in clients:
            seen = [v["rules"]["daily_loss"]["status"] for v in c.views()]
            # In order, each band once (a view per change; coalescing may only drop repeats).
            assert [b for i, b in enumerate(seen) if i == 0 or seen[i - 1] != b] == [
                "safe",
                "warning",
                "danger",
                "safe",
            ]
            versions = [int(e.id or 0) for e in c.events if e.type == "risk"]
            assert versions == sorted(set(versions))
            daily = c.views()[-1]["rules"]["daily_loss"]
            assert daily["remaining"] == "5000.00" and daily["floor"] == "95000.00"
    finally:
        for c in clients:
            await c.close()


async def test_a_stream_resumes_with_the_current_view_after_a_disconnect(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http)
    for w in BOTH:
        client = await streams(http, acct, OWNER)[w].start()
        first = await client.wait_for(lambda e: e.type == "risk")
        await client.close()
        pnl = f"-{10 + w}.00"
        await kafka.send("trades", acct, s.updated(acct, "p-1", pnl, None))
        await http.account_when(0, acct, OWNER, lambda a, p=pnl: a["unrealized_pnl"] == p)
        again = await SseClient(
            http.url(w, f"/funded-accounts/{acct}/risk/stream"),
            {**OWNER, "Last-Event-ID": first.id or ""},
        ).start()
        try:
            resumed = await again.wait_for(lambda e: e.type == "risk")
            assert int(resumed.id or 0) > int(first.id or 0)
            assert resumed.data["unrealized_pnl"] == pnl
        finally:
            await again.close()


async def test_the_stream_refuses_like_get(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    missing = "fa_" + "0" * 32
    for w in BOTH:
        for headers, account, status in (
            ({}, acct, 401),
            (OTHER, acct, 404),
            (OWNER, missing, 404),
        ):
            client = await SseClient(
                http.url(w, f"/funded-accounts/{account}/risk/stream"), headers
            ).start()
            assert client.status == status
            get = await http.get(w, f"/funded-accounts/{account}", headers)
            assert get.status == status
            assert client.body["error"]["code"] == get.body["error"]["code"]
            await client.close()
        # An admin may read any account's stream, as GET.
        admin = await SseClient(
            http.url(w, f"/funded-accounts/{acct}/risk/stream"), auth("adm_1", ["admin"])
        ).start()
        try:
            assert admin.status == 200
            await admin.wait_for(lambda e: e.type == "risk")
        finally:
            await admin.close()
    for w in BOTH:
        # A closed stream is noticed within a second (the server checks its connection).
        deadline = time.monotonic() + 10
        while True:
            metrics = (await http.get(w, "/metrics", OWNER)).body.splitlines()
            if "fundedflow_risk_streams 0" in metrics or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert "fundedflow_risk_streams 0" in metrics
        assert "fundedflow_risk_feed_up 1" in metrics
        assert any(line.startswith("fundedflow_risk_events_sent_total ") for line in metrics)


async def _owner_counters(http: Http) -> tuple[int, int]:
    """Views published and changes left unwatched, over both workers."""
    published = unwatched = 0
    for w in BOTH:
        for line in (await http.get(w, "/metrics", OWNER)).body.splitlines():
            name, _, value = line.partition(" ")
            if name == "fundedflow_risk_views_published_total":
                published += int(float(value))
            elif name == "fundedflow_risk_views_unwatched_total":
                unwatched += int(float(value))
    return published, unwatched


async def test_changes_nobody_streams_build_no_view(
    http: Http, kafka: Kafka, services: Services, prefix: str
) -> None:
    acct = await new_account(kafka, http)
    await asyncio.sleep(0.5)  # the publisher's window for the opening has passed
    published, unwatched = await _owner_counters(http)
    for n in range(3):
        pnl = f"-{20 + n}.00"
        await kafka.send("trades", acct, s.updated(acct, "p-1", pnl, None))
        await http.account_when(0, acct, OWNER, lambda a, p=pnl: a["unrealized_pnl"] == p)
    deadline = time.monotonic() + 5
    while (now := await _owner_counters(http))[1] < unwatched + 3:
        assert time.monotonic() < deadline, (published, unwatched, now)
        await asyncio.sleep(0.1)
    assert now[0] == published  # no stream is open: nothing was built or published

    # Streamed, the same account's next change is published.
    client = await streams(http, acct, OWNER)[1].start()
    redis = aioredis.Redis.from_url(services.redis_url)
    try:
        await client.wait_for(lambda e: e.type == "risk")
        # Until Redis counts the stream's subscription, a change reaches it by the stream's
        # catch-up read of the owner, not by a publish.
        subscribed_by = time.monotonic() + 10
        while (await redis.pubsub_numsub(channel(prefix, acct)))[0][1] < 1:
            assert time.monotonic() < subscribed_by, "the stream's channel was never subscribed"
            await asyncio.sleep(0.05)
        await kafka.send("trades", acct, s.updated(acct, "p-1", "-30.00", None))
        seen = await client.wait_for(
            lambda e: e.type == "risk" and e.data["unrealized_pnl"] == "-30.00"
        )
        assert seen.data["account_id"] == acct
        deadline = time.monotonic() + 5
        while (await _owner_counters(http))[0] < published + 1:
            assert time.monotonic() < deadline, "the streamed change was not published"
            await asyncio.sleep(0.1)
    finally:
        await client.close()
        await redis.aclose()
