"""The live feed's Redis side against the real Redis: the owner builds and publishes a view only
for accounts some worker streams, and a stream counts as subscribed only once Redis says so."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.riskfeed import FeedMessage, RiskHub, RiskPublisher, channel
from tests.integration import streams as s
from tests.integration.conftest import Services

pytestmark = pytest.mark.integration


class Builds:
    """A view builder that records what it was asked to build."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def __call__(self, stored: Any, at: float) -> bytes:
        self.asked.append(stored)
        return b'{"stored": "%s"}' % str(stored).encode()


@pytest.fixture
async def hub(services: Services) -> AsyncIterator[tuple[RiskHub, str]]:
    prefix = s.uid("feed") + "."
    hub = RiskHub(services.redis_url, prefix)
    task = asyncio.create_task(hub.run())
    try:
        yield hub, prefix
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await hub.close()


async def numsub(services: Services, name: str) -> int:
    r = aioredis.Redis.from_url(services.redis_url)
    try:
        [(_, n)] = await r.pubsub_numsub(name)
        return int(n)
    finally:
        await r.aclose()


async def unsubscribed(services: Services, name: str) -> None:
    """Wait until Redis counts no subscriber of channel `name` (an unsubscribe is asynchronous)."""
    for _ in range(50):
        if await numsub(services, name) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} still has a subscriber")


async def test_a_listener_is_subscribed_only_once_redis_counts_it(
    services: Services, hub: tuple[RiskHub, str]
) -> None:
    h, prefix = hub
    listener = h.join("acc_watched")
    await asyncio.wait_for(listener.subscribed.wait(), 5)
    # What the owner's publisher asks before it builds a view already sees this stream.
    assert await numsub(services, channel(prefix, "acc_watched")) == 1
    second = h.join("acc_watched")  # already confirmed: subscribed at once
    assert second.subscribed.is_set()
    h.leave(listener)
    h.leave(second)
    await unsubscribed(services, channel(prefix, "acc_watched"))


async def test_views_are_built_and_published_only_for_streamed_accounts(
    services: Services, hub: tuple[RiskHub, str]
) -> None:
    h, prefix = hub
    listener = h.join("acc_watched")
    await asyncio.wait_for(listener.subscribed.wait(), 5)
    builds = Builds()
    publisher = RiskPublisher(services.redis_url, builds, prefix)
    try:
        publisher.offer("acc_watched", 3, "v3")
        publisher.offer("acc_idle", 7, "idle-v7")
        publisher.offer("acc_watched", 4, "v4")  # the newer value replaces the queued one
        await publisher.publish_pending()
        assert builds.asked == ["v4"]
        assert (publisher.published, publisher.unwatched, publisher.coalesced) == (1, 1, 1)
        await asyncio.wait_for(listener.wake.wait(), 5)
        message = listener.take()
        assert isinstance(message, FeedMessage)
        assert (message.version, message.view_json) == (4, b'{"stored": "v4"}')

        # Nobody streams either account any more: nothing is built.
        h.leave(listener)
        await unsubscribed(services, channel(prefix, "acc_watched"))
        publisher.offer("acc_watched", 5, "v5")
        await publisher.publish_pending()
        assert builds.asked == ["v4"]
        assert (publisher.published, publisher.unwatched) == (1, 2)
    finally:
        await publisher.close()


async def test_a_view_that_cannot_be_built_drops_only_itself(
    services: Services, hub: tuple[RiskHub, str]
) -> None:
    h, prefix = hub
    good, bad = h.join("acc_good"), h.join("acc_bad")
    await asyncio.wait_for(asyncio.gather(good.subscribed.wait(), bad.subscribed.wait()), 5)

    def build(stored: Any, at: float) -> bytes:
        if stored == "corrupt":
            raise ValueError("stored account cannot be read")
        return b"{}"

    publisher = RiskPublisher(services.redis_url, build, prefix)
    try:
        publisher.offer("acc_bad", 1, "corrupt")
        publisher.offer("acc_good", 1, "fine")
        await publisher.publish_pending()
        assert (publisher.published, publisher.dropped) == (1, 1)
        await asyncio.wait_for(good.wake.wait(), 5)
        assert good.take() is not None
        assert bad.take() is None
    finally:
        await publisher.close()
