"""A Server-Sent Events client for the risk stream tests (aiohttp, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Event:
    type: str
    data: dict[str, Any]
    id: str | None


@dataclass
class SseClient:
    """Reads one stream in the background; `events` fills as they arrive."""

    url: str
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)
    comments: int = 0
    status: int | None = None
    _task: asyncio.Task[None] | None = None
    _session: aiohttp.ClientSession | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> SseClient:
        self._session = aiohttp.ClientSession()
        resp = await self._session.get(
            self.url, headers=self.headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=60)
        )
        self.status = resp.status
        if resp.status != 200:
            self.body = await resp.json()
            resp.release()
            return self
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        self._task = asyncio.create_task(self._read(resp))
        return self

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        block: list[str] = []
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line:
                block.append(line)
                continue
            kind, data, event_id = "message", "", None
            for item in block:
                if item.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = item.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    kind = value
                elif name == "data":
                    data += value
                elif name == "id":
                    event_id = value
            block = []
            if data:
                self.events.append(Event(kind, json.loads(data), event_id))
                self._arrived.set()

    def views(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == "risk"]

    async def wait_for(
        self, check: Any, timeout: float = 20, what: str = "an event", since: int = 0
    ) -> Event:
        """The first event from index `since` on that passes `check`."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if check(event):
                    return event
            seen = len(self.events)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {self.events[-5:]}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()
