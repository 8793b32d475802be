"""The live risk feed's fan-out through Redis pub/sub (CONTRACT section 7, `/risk/stream`).

The owner of an account publishes its risk view after every change it applies (`RiskPublisher`,
fed by the account agent once the account's value is stored); every worker subscribes to the
channels of the accounts its clients stream (`RiskHub`) and hands each client the latest view
(`Listener`): a client that falls behind gets the newest view, never a queue of stale ones.

One channel per account (`{prefix}fundedflow:risk:{account_id}`): a worker then receives only
what its clients asked for, and Redis does the filtering. A message is `b"<version> <published
epoch seconds> "` followed by the view's JSON, so a subscriber learns the version and the
publish time without decoding the view.

Redis down: the publisher drops what it could not send (the view is derived, never the system
of record) and counts it; the hub reports `down` to its listeners, which then poll the owner
every second (views/riskstream.py) until it reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
# Latency buckets (seconds) of publish -> send on a stream.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def channel(prefix: str, account_id: str) -> str:
    return f"{prefix}fundedflow:risk:{account_id}"


def envelope(version: int, view_json: bytes, published: float | None = None) -> bytes:
    at = time.time() if published is None else published
    return f"{version} {at:.6f} ".encode() + view_json


@dataclass(frozen=True)
class FeedMessage:
    version: int
    published: float
    view_json: bytes

    @classmethod
    def parse(cls, data: bytes) -> FeedMessage | None:
        try:
            version, published, view = data.split(b" ", 2)
            return cls(int(version), float(published), view)
        except ValueError:
            return None


# A view is built only for an account some worker streams: one `PUBSUB NUMSUB` per wake-up asks
# Redis which of the pending accounts' channels have a subscriber (in chunks of this many).
NUMSUB_CHUNK = 1000
# The publisher asks Redis and publishes at most once per this many seconds: one NUMSUB and one
# pipeline per window, not per account flush (each is a Redis round trip of Python work on the
# agent's event loop). A change after a quiet spell goes out at once; under a steady flow a
# change waits at most this long.
PUBLISH_WINDOW_SECONDS = 0.01


class RiskPublisher:
    """The owner's side: the latest stored value per account, turned into a view and sent by a
    background task in one pipeline per wake-up; `offer` never waits and builds nothing, so the
    account agent pays only a dictionary write per account and batch.

    A view is built only for accounts whose channel has a subscriber when the task wakes. A
    stream that subscribes later reads the owner's view once its subscription is confirmed
    (`Listener.subscribed`), which is after this account's value was stored, so it misses
    nothing."""

    def __init__(
        self,
        redis_url: str,
        build: Callable[[Any, float], bytes],
        prefix: str = "",
        window: float = PUBLISH_WINDOW_SECONDS,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=PUBLISH_TIMEOUT_SECONDS, socket_connect_timeout=0.5
        )
        self._build = build
        self._prefix = prefix
        self._window = window
        self._pending: dict[str, tuple[int, Any, float]] = {}
        self._wake = asyncio.Event()
        self.published = 0
        self.coalesced = 0
        self.unwatched = 0
        self.dropped = 0
        self.failures = 0

    def offer(self, account_id: str, version: int, stored: Any) -> None:
        """Queue `stored` (what `build` turns into the view JSON, with the instant it was
        stored) as the account's latest. That instant is the view's `as_of` and the message's
        publish time, so the feed's latency figures count the window too."""
        if account_id in self._pending:
            self.coalesced += 1
        self._pending[account_id] = (version, stored, time.time())
        self._wake.set()

    async def _watched(self, account_ids: list[str]) -> list[str]:
        watched: list[str] = []
        for start in range(0, len(account_ids), NUMSUB_CHUNK):
            chunk = account_ids[start : start + NUMSUB_CHUNK]
            counts = await asyncio.wait_for(
                self._redis.pubsub_numsub(*(channel(self._prefix, a) for a in chunk)),
                PUBLISH_TIMEOUT_SECONDS,
            )
            watched += [a for a, (_, n) in zip(chunk, counts, strict=True) if int(n) > 0]
        return watched

    async def publish_pending(self) -> None:
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            watched = await self._watched(list(batch))
            self.unwatched += len(batch) - len(watched)
            if not watched:
                return
            pipe = self._redis.pipeline(transaction=False)
            sent = 0
            for account_id in watched:
                version, stored, at = batch[account_id]
                try:
                    view = self._build(stored, at)
                except Exception:
                    # A view that cannot be built is a bug to see, never a reason to stop the
                    # feed for the other accounts.
                    self.dropped += 1
                    log.exception("risk feed: the view of %s could not be built", account_id)
                    continue
                pipe.publish(channel(self._prefix, account_id), envelope(version, view, at))
                sent += 1
            if sent:
                await asyncio.wait_for(pipe.execute(), PUBLISH_TIMEOUT_SECONDS)
            self.published += sent
        except (RedisError, OSError, TimeoutError) as exc:
            # Streams poll the owner while Redis is away; nothing here is the record.
            self.failures += 1
            self.dropped += len(batch)
            log.warning("risk feed: %d view(s) not published: %s", len(batch), exc)
            await asyncio.sleep(RECONNECT_SECONDS / 2)

    async def run(self) -> None:
        last = -self._window
        while True:
            await self._wake.wait()
            since = time.monotonic() - last
            if since < self._window:
                await asyncio.sleep(self._window - since)
            self._wake.clear()
            last = time.monotonic()
            await self.publish_pending()

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass(eq=False)
class Listener:
    """One stream's mailbox: the newest message and whether the feed is up."""

    account_id: str
    latest: FeedMessage | None = None
    coalesced: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    feed_up: bool = True
    # Set once the account's channel is subscribed: what was published before may be missed,
    # so the stream reads the owner's view once then (`RiskStream`).
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def mark_subscribed(self) -> None:
        self.subscribed.set()
        self.wake.set()

    def deliver(self, message: FeedMessage) -> None:
        if self.latest is not None:
            if message.version <= self.latest.version:
                return
            self.coalesced += 1
        self.latest = message
        self.wake.set()

    def take(self) -> FeedMessage | None:
        message, self.latest = self.latest, None
        return message

    def feed_changed(self, up: bool) -> None:
        self.feed_up = up
        self.wake.set()


class RiskHub:
    """A worker's subscriptions: one pub/sub connection, one channel per account that has a
    listener here, and the listeners of each account."""

    def __init__(self, redis_url: str, prefix: str = "") -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=0.5)
        self._prefix = prefix
        self._listeners: dict[str, set[Listener]] = {}
        self._changed = asyncio.Event()
        self.up = False
        self.received = 0
        self.reconnects = 0
        # Set when the worker stops: open streams end instead of holding the web server.
        self.closing = False
        # Accounts whose channel was asked for on the current connection, and those whose
        # subscription Redis has confirmed (from then on it delivers their messages).
        self._requested: set[str] = set()
        self._subscribed: set[str] = set()

    @property
    def streams(self) -> int:
        return sum(len(v) for v in self._listeners.values())

    def join(self, account_id: str) -> Listener:
        listener = Listener(account_id, feed_up=self.up)
        self._listeners.setdefault(account_id, set()).add(listener)
        if self.up and account_id in self._subscribed:
            listener.mark_subscribed()
        self._changed.set()
        return listener

    def leave(self, listener: Listener) -> None:
        group = self._listeners.get(listener.account_id)
        if group is None:
            return
        group.discard(listener)
        if not group:
            del self._listeners[listener.account_id]
        self._changed.set()

    def _set_up(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        for group in self._listeners.values():
            for listener in group:
                listener.feed_changed(up)

    def _account_of(self, ch: bytes | str) -> str:
        name = ch.decode() if isinstance(ch, bytes) else ch
        return name[len(channel(self._prefix, "")) :]

    def _confirmed(self, msg: dict[str, Any]) -> None:
        """A subscribe or unsubscribe confirmation: a stream's catch-up read of the owner waits
        for the first, so whatever the owner stored before it is read, and what it publishes
        after it is delivered here."""
        account_id = self._account_of(msg["channel"])
        if msg["type"] == "unsubscribe":
            self._subscribed.discard(account_id)
            return
        if account_id not in self._requested:
            return
        self._subscribed.add(account_id)
        for listener in self._listeners.get(account_id, ()):
            listener.mark_subscribed()

    def _dispatch(self, ch: bytes | str, data: bytes) -> None:
        account_id = self._account_of(ch)
        message = FeedMessage.parse(data)
        if message is None:
            return
        self.received += 1
        for listener in list(self._listeners.get(account_id, ())):
            listener.deliver(message)

    def close_streams(self) -> None:
        self.closing = True
        for group in self._listeners.values():
            for listener in group:
                listener.wake.set()

    async def run(self, enabled: bool = True) -> None:
        """Subscribe, follow the wanted channels, dispatch; on any Redis error mark the feed
        down, wait a second and start again (re-subscribing every wanted channel). Disabled
        (`FUNDEDFLOW_RISK_FEED=off`): streams poll. Cancelled when the worker stops: the open
        streams are told to end, so none holds the web server's shutdown."""
        try:
            if enabled:
                await self._follow()
            else:
                await asyncio.Event().wait()
        finally:
            self.close_streams()

    async def _follow(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            self._requested = set()
            self._subscribed = set()
            try:
                # A channel of its own keeps the connection subscribed with no listener yet.
                await pubsub.subscribe(channel(self._prefix, "_"))
                self._changed.set()
                while True:
                    if self._changed.is_set():
                        self._changed.clear()
                        await self._resubscribe(pubsub)
                        self._set_up(True)
                    msg = await pubsub.get_message(timeout=0.2)
                    if msg is None:
                        continue
                    kind = msg.get("type")
                    if kind == "message":
                        self._dispatch(msg["channel"], msg["data"])
                    elif kind in ("subscribe", "unsubscribe"):
                        self._confirmed(msg)
            except (RedisError, OSError) as exc:
                if self.up:
                    log.warning("risk feed: Redis lost (%s); streams poll their owners", exc)
                self._set_up(False)
                for group in self._listeners.values():
                    for listener in group:
                        listener.subscribed.clear()
                self.reconnects += 1
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _resubscribe(self, pubsub: Any) -> None:
        wanted = set(self._listeners)
        new = wanted - self._requested
        old = self._requested - wanted
        if new:
            await pubsub.subscribe(*(channel(self._prefix, a) for a in new))
        if old:
            await pubsub.unsubscribe(*(channel(self._prefix, a) for a in old))
        self._requested = wanted

    async def close(self) -> None:
        await self._redis.aclose()
