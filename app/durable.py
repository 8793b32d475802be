"""An offset is committed only after every record the inputs before it produced was delivered.

Faust commits an input offset after `Producer.flush()`, whose first step,
`ProducerBuffer.flush()`, drains the buffer that table writes go through (a changelog record
per `table[key] = value`). That drain gives up after 0.1 s without progress
(`flush_atmost`), and it counts a record as sent once it is taken off the queue, before the
driver has even accepted it. Under load (one busy loop, a slow broker) the commit then passes
changelog records still queued; a SIGKILL right after loses them while the offset says the
inputs were done. The worker's local RocksDB keeps the writes, so its value is ahead of the
changelog, and the inputs are never re-read to write it again (tests/integration/test_crash.py
caught it: changelogs 1-3 versions behind the killed worker's store;
tests/unit/app/test_durable.py shows the early return on Faust's own buffer).

`install()` replaces that drain: every record put in the buffer, and every record the agents
send themselves (`track`), is kept until its delivery future is done; the flush before a
commit waits for all of those that exist when it starts (the commit's offsets were taken
before it), however long that takes, and raises `DeliveryFailed` if any of them failed, so the
offset is not committed and the worker stops: its inputs are read again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

WAIT_LOG_SECONDS = 10.0


class DeliveryFailed(RuntimeError):
    """A record the committed inputs produced was not delivered: the commit must not pass."""


class Unsent:
    """The delivery futures not yet known to be done, and the failures among the done ones."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Future[Any]] = set()
        self.failures: list[BaseException] = []

    def track(self, fut: Awaitable[Any]) -> None:
        if not isinstance(fut, asyncio.Future):
            return
        if fut.done():
            self._failed(fut)
            return
        self.pending.add(fut)
        fut.add_done_callback(self._done)

    def _failed(self, fut: asyncio.Future[Any]) -> bool:
        if fut.cancelled():
            self.failures.append(asyncio.CancelledError("a record's send was cancelled"))
            return True
        exc = fut.exception()
        if exc is not None:
            self.failures.append(exc)
            return True
        return False

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self.pending.discard(fut)
        self._failed(fut)

    async def drain(self) -> None:
        """Wait for every record tracked so far; raise if any was not delivered."""
        waiting = [f for f in self.pending if not f.done()]
        waited = 0.0
        while waiting:
            _, still = await asyncio.wait(waiting, timeout=WAIT_LOG_SECONDS)
            waiting = list(still)
            waited += WAIT_LOG_SECONDS
            if waiting:
                log.warning(
                    "commit waits for %d record(s) not yet delivered (%.0f s)", len(waiting), waited
                )
        if self.failures:
            first = self.failures[0]
            count = len(self.failures)
            self.failures.clear()
            raise DeliveryFailed(f"{count} record(s) not delivered, first: {first!r}")


UNSENT = Unsent()


def track(fut: Awaitable[Any]) -> None:
    """Hold the commit until `fut` (a record's delivery) is done."""
    UNSENT.track(fut)


_installed = False
# Faust's own methods, kept when install() replaces them (tests/unit/app/test_durable.py).
stock: tuple[Any, Any] | None = None


def install() -> None:
    """Make Faust's pre-commit flush wait for delivery (see the module docstring)."""
    global _installed, stock
    if _installed:
        return
    from faust.transport.producer import ProducerBuffer

    original_put = ProducerBuffer.put
    stock = (ProducerBuffer.put, ProducerBuffer.flush)

    def put(self: ProducerBuffer, fut: Any) -> None:
        original_put(self, fut)
        UNSENT.track(fut)

    original_flush = ProducerBuffer.flush

    async def flush(self: ProducerBuffer) -> None:
        if self.state != "running":
            # Stopping: the sender task is gone, so nothing queued would be delivered.
            await original_flush(self)
            return
        await UNSENT.drain()

    ProducerBuffer.put = put  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    _installed = True


async def delivered() -> None:
    """Wait until every record sent so far (tracked) is delivered; raise `DeliveryFailed` if
    one was not. The account agent waits for it before it stores a value (agents/accounts.py)."""
    await UNSENT.drain()


async def send_durable(topic: Any, *, key: bytes | None, value: bytes, **extra: Any) -> None:
    """Send a record from an agent, now, and hold the next commit until it is delivered."""
    track(await topic.send(key=key, value=value, force=True, **extra))
