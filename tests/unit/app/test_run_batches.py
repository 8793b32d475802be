"""The account agent's loop (`agents.accounts.run_batches`) over a stand-in for Faust's stream:
what makes a batch, when inputs are acknowledged, and what a failed batch does."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents import accounts
from agents.accounts import run_batches


@dataclass
class Msg:
    offset: int
    generation_id: int = 1


@dataclass
class Ev:
    message: Msg


@dataclass
class FlowControl:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class App:
    consumer_generation_id: int = 1
    flow_control: FlowControl = field(default_factory=FlowControl)


class Queue:
    def __init__(self) -> None:
        self._queue: deque[Ev] = deque()


class Channel:
    def __init__(self) -> None:
        self.queue = Queue()


class Stream:
    """Inputs arrive in groups: a group is queued at once, and the stream hands them out one
    at a time; `acked` records acknowledgements in order."""

    def __init__(self, arrivals: list[list[Ev]]) -> None:
        self.arrivals = arrivals
        self.channel = Channel()
        self.app = App()
        self.acked: list[int] = []
        self.log: list[str] = []

    def noack(self) -> Stream:
        return self

    async def events(self) -> AsyncIterator[Ev]:
        queue = self.channel.queue._queue
        for group in self.arrivals:
            queue.extend(group)
            while queue:
                yield queue.popleft()
                await asyncio.sleep(0)

    async def ack(self, event: Ev) -> bool:
        self.acked.append(event.message.offset)
        self.log.append(f"ack {event.message.offset}")
        return True


class Recorder:
    def __init__(self, stream: Stream, fail_at: int | None = None) -> None:
        self.stream = stream
        self.batches: list[list[int]] = []
        self.fail_at = fail_at

    async def process_batch(self, events: Sequence[Any]) -> None:
        offsets = [e.message.offset for e in events]
        if self.fail_at in offsets:
            raise RuntimeError("broker gone")
        self.batches.append(offsets)
        self.stream.log.append(f"batch {offsets}")


def evs(*offsets: int) -> list[Ev]:
    return [Ev(Msg(o)) for o in offsets]


def run(stream: Stream, proc: Recorder, batch_max: int) -> None:
    asyncio.run(run_batches(stream, proc, batch_max))  # type: ignore[arg-type]


def test_a_batch_is_an_input_and_those_queued_behind_it() -> None:
    stream = Stream([evs(0, 1, 2), evs(3), evs(4, 5, 6, 7, 8)])
    proc = Recorder(stream)
    run(stream, proc, batch_max=3)
    assert proc.batches == [[0, 1, 2], [3], [4, 5, 6], [7, 8]]
    # Each input is acknowledged after its batch, never before.
    assert stream.acked == list(range(9))
    for offset in range(9):
        batch = next(b for b in proc.batches if offset in b)
        assert stream.log.index(f"batch {batch}") < stream.log.index(f"ack {offset}")


def test_an_input_the_stream_would_skip_ends_the_batch() -> None:
    """An input of an older consumer generation is skipped by the stream, which would then
    wait for a new one: the batch does not wait behind it."""
    stale = Ev(Msg(2, generation_id=0))
    stream = Stream([[*evs(0, 1), stale]])
    proc = Recorder(stream)

    async def main() -> None:
        task = asyncio.create_task(run_batches(stream, proc, 10))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(main())
    assert proc.batches[0] == [0, 1]


def test_a_failed_batch_stops_the_process_with_nothing_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Exited(BaseException):
        pass

    def exit_(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(accounts.os, "_exit", exit_)
    monkeypatch.setattr(accounts.logging, "shutdown", lambda: None)
    stream = Stream([evs(0, 1), evs(2, 3)])
    proc = Recorder(stream, fail_at=3)
    with pytest.raises(Exited) as exited:
        run(stream, proc, batch_max=10)
    assert exited.value.args == (accounts.EXIT_BATCH_FAILED,)
    assert proc.batches == [[0, 1]]
    assert stream.acked == [0, 1]  # the failed batch's inputs are read again after a restart
