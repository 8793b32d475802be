"""Faust's pre-commit flush gives up with records still queued; app/durable.py's does not.

Both run on Faust's own `ProducerBuffer` (started as the service it is), with a channel whose
driver takes 0.3 s to accept each record, as a loaded broker connection or a busy loop does.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.producer import ProducerBuffer

from app import durable

SLOW_SECONDS = 0.3


class SlowChannel:
    """Accepts a record after SLOW_SECONDS, and delivers it (or fails it) at once."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.accepted = 0

    async def publish_message(self, fut: asyncio.Future[Any], wait: bool = False) -> None:
        await asyncio.sleep(SLOW_SECONDS)
        self.accepted += 1
        if self.fail:
            fut.set_exception(OSError("broker gone"))
        else:
            fut.set_result("delivered")


def record(channel: SlowChannel) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.message = SimpleNamespace(channel=channel)  # type: ignore[attr-defined]
    return fut


async def started_buffer() -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
    await buffer.start()
    return buffer


@pytest.fixture
def stock_buffer() -> Any:
    """ProducerBuffer as Faust ships it, whatever another test installed."""
    saved = (ProducerBuffer.put, ProducerBuffer.flush)
    if durable.stock is not None:
        ProducerBuffer.put, ProducerBuffer.flush = durable.stock  # type: ignore[method-assign]
    yield
    ProducerBuffer.put, ProducerBuffer.flush = saved  # type: ignore[method-assign]


@pytest.fixture
def installed() -> Any:
    saved = (ProducerBuffer.put, ProducerBuffer.flush, durable._installed)
    durable._installed = False
    durable.install()
    durable.UNSENT.failures.clear()
    yield
    ProducerBuffer.put, ProducerBuffer.flush, durable._installed = saved  # type: ignore[method-assign]


async def test_fausts_flush_returns_with_records_still_queued(stock_buffer: None) -> None:
    buffer = await started_buffer()
    channel = SlowChannel()
    futures = [record(channel) for _ in range(5)]
    try:
        for fut in futures:
            buffer.put(fut)  # type: ignore[arg-type]
        await buffer.flush()  # what Consumer._commit_offsets awaits before committing
        # It came back after the first 0.1 s without a record taken: the rest are not sent,
        # and a commit now would pass them.
        assert buffer.size >= 3
        assert not all(f.done() for f in futures)
    finally:
        await asyncio.gather(*futures)
        await buffer.stop()


async def test_the_installed_flush_waits_for_every_record(installed: None) -> None:
    buffer = await started_buffer()
    channel = SlowChannel()
    futures = [record(channel) for _ in range(5)]
    try:
        for fut in futures:
            buffer.put(fut)  # type: ignore[arg-type]
        await buffer.flush()
        assert buffer.size == 0
        assert all(f.done() and f.result() == "delivered" for f in futures)
        assert channel.accepted == 5
    finally:
        await buffer.stop()


async def test_a_record_that_failed_stops_the_commit(installed: None) -> None:
    buffer = await started_buffer()
    try:
        buffer.put(record(SlowChannel(fail=True)))  # type: ignore[arg-type]
        with pytest.raises(durable.DeliveryFailed, match="broker gone"):
            await buffer.flush()
        await buffer.flush()  # reported once: the worker stops on the first report
    finally:
        await buffer.stop()


async def test_agent_sends_are_held_too(installed: None) -> None:
    loop = asyncio.get_running_loop()
    sent: asyncio.Future[Any] = loop.create_future()

    class Topic:
        async def send(self, **kwargs: Any) -> asyncio.Future[Any]:
            assert kwargs["force"] is True
            return sent

    await durable.send_durable(Topic(), key=b"k", value=b"v")
    loop.call_later(SLOW_SECONDS, sent.set_result, "delivered")
    buffer = await started_buffer()
    try:
        await buffer.flush()
        assert sent.done()
    finally:
        await buffer.stop()
