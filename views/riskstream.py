"""The live risk feed over HTTP (CONTRACT section 7).

- `GET /funded-accounts/{id}/risk`: the account's risk view now (domain/riskview.py), read at
  the owner like `GET /funded-accounts/{id}`.
- `GET /funded-accounts/{id}/risk/stream`: Server-Sent Events, served by any worker. First the
  current view (read from the owner with the caller's own token, so the owner decides who may
  see it: 401 and 404 exactly as GET), then one `risk` event per change (`id:` the account's
  state version) from the Redis fan-out (app/riskfeed.py), a comment every 15 s. A client that
  falls behind gets the newest view, never a queue of stale ones. `Last-Event-ID` resumes with
  the current view (it is always the first event). Redis down: a `feed` event says so and the
  stream polls the owner every second until the fan-out is back, then says that too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.auth import Unauthorized
from app.codec import dumps
from app.riskfeed import LATENCY_BUCKETS, RiskHub
from domain.riskview import risk_view
from views.context import WebContext
from views.http import ApiError, api, json_response, page, unavailable
from views.routing import at_owner, forward, is_local, owner_url

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 1.0


@dataclass
class StreamStats:
    """What `/metrics` shows of this worker's streams."""

    connected: int = 0
    sent: int = 0
    coalesced: int = 0
    polled: int = 0
    latency_buckets: Counter[float] = field(default_factory=Counter)
    latency_count: int = 0
    latency_sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.latency_count += 1
        self.latency_sum += seconds
        for bound in LATENCY_BUCKETS:
            if seconds <= bound:
                self.latency_buckets[bound] += 1


def sse(event: str, data: bytes, event_id: int | None = None) -> bytes:
    head = b"" if event_id is None else f"id: {event_id}\n".encode()
    return head + f"event: {event}\n".encode() + b"data: " + data + b"\n\n"


async def fetch_view(ctx: WebContext, request: web.Request, account_id: str) -> dict[str, Any]:
    """The risk view from the owner, as the caller may see it (ApiError: 404, 503)."""
    url = owner_url(ctx.ff, account_id)
    if is_local(ctx.ff, url):
        principal = ctx.principal(request)
        state = ctx.visible_account(account_id, principal, admin_may_read=True)
        return risk_view(state, datetime.now(UTC))
    path = f"/funded-accounts/{account_id}/risk"
    resp = await forward(ctx.ff, request.clone(rel_url=path, method="GET"), url)
    body = resp.body if isinstance(resp.body, bytes) else b"{}"
    if resp.status == 200:
        view: dict[str, Any] = json.loads(body)
        return view
    try:
        error = json.loads(body)["error"]
        raise ApiError(resp.status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        raise unavailable("the account's owner did not answer") from None


class StreamEnded(Exception):
    """The stream ends (its token expired while it was open)."""


class RiskStream:
    """One client's stream: the first view, then changes, heartbeats, and the polling
    fallback while the fan-out is down."""

    def __init__(
        self,
        ctx: WebContext,
        hub: RiskHub,
        stats: StreamStats,
        request: web.Request,
        resp: web.StreamResponse,
        account_id: str,
    ) -> None:
        self.ctx, self.hub, self.stats = ctx, hub, stats
        self.request, self.resp, self.account_id = request, resp, account_id
        self.last_version = -1
        self.last_write = time.monotonic()

    def gone(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    async def write(self, chunk: bytes) -> None:
        await self.resp.write(chunk)
        self.last_write = time.monotonic()

    async def send_view(self, version: int, view_json: bytes) -> None:
        if version <= self.last_version:
            return
        self.last_version = version
        await self.write(sse("risk", view_json, version))
        self.stats.sent += 1

    async def poll(self) -> None:
        try:
            view = await fetch_view(self.ctx, self.request, self.account_id)
        except ApiError as err:
            await self.write(sse("feed", dumps({"owner": "unavailable", "detail": err.message})))
            return
        except Unauthorized as exc:
            # The token expired while the stream was open: it ends here.
            await self.write(sse("feed", dumps({"auth": "expired", "detail": str(exc)})))
            raise StreamEnded from None
        self.stats.polled += 1
        await self.send_view(int(view["version"]), dumps(view))

    async def run(self, first: dict[str, Any]) -> None:
        listener = self.hub.join(self.account_id)
        self.stats.connected += 1
        feed_up = listener.feed_up
        caught_up = False
        try:
            await self.send_view(int(first["version"]), dumps(first))
            if not feed_up:
                await self.write(sse("feed", dumps({"redis": "down", "mode": "polling"})))
            while not self.hub.closing:
                if self.gone():
                    break
                # At most a second between looks at the connection: a client that left is
                # noticed then, not at the next heartbeat.
                wait = min(HEARTBEAT_SECONDS - (time.monotonic() - self.last_write), 1.0)
                if not listener.feed_up:
                    wait = min(wait, POLL_SECONDS)
                try:
                    await asyncio.wait_for(listener.wake.wait(), max(0.0, wait))
                except TimeoutError:
                    pass
                listener.wake.clear()
                if listener.feed_up != feed_up:
                    feed_up = listener.feed_up
                    mode = (
                        {"redis": "up", "mode": "push"}
                        if feed_up
                        else {
                            "redis": "down",
                            "mode": "polling",
                        }
                    )
                    await self.write(sse("feed", dumps(mode)))
                    caught_up = False  # read the owner once the channel is subscribed again
                if feed_up and not caught_up and listener.subscribed.is_set():
                    # A change published between the first read and the subscription.
                    caught_up = True
                    await self.poll()
                if feed_up:
                    message = listener.take()
                    if message is not None:
                        self.stats.coalesced += listener.coalesced
                        listener.coalesced = 0
                        before = self.last_version
                        await self.send_view(message.version, message.view_json)
                        if self.last_version != before:
                            self.stats.observe(max(0.0, time.time() - message.published))
                else:
                    await self.poll()
                if time.monotonic() - self.last_write >= HEARTBEAT_SECONDS:
                    await self.write(b": heartbeat\n\n")
        except (ConnectionResetError, RuntimeError, OSError, StreamEnded):
            pass  # the client went away (aiohttp raises one of these on write), or its token
        except Exception:
            log.exception("risk stream of %s failed", self.account_id)
        finally:
            self.hub.leave(listener)
            self.stats.connected -= 1


def register(ctx: WebContext) -> None:
    app = ctx.ff.app
    hub: RiskHub = ctx.ff.extras["risk_hub"]
    stats = StreamStats()
    ctx.ff.extras["risk_stream_stats"] = stats

    @page(app, "/funded-accounts/{account_id}/risk")
    @api
    async def account_risk(self: Any, request: web.Request, account_id: str) -> web.Response:
        principal = ctx.principal(request)

        async def local() -> web.Response:
            state = ctx.visible_account(account_id, principal, admin_may_read=True)
            return json_response(risk_view(state, datetime.now(UTC)))

        return await at_owner(ctx.ff, request, account_id, local)

    @page(app, "/funded-accounts/{account_id}/risk/stream")
    @api
    async def account_risk_stream(
        self: Any, request: web.Request, account_id: str
    ) -> web.StreamResponse:
        ctx.principal(request)  # 401 before anything else
        first = await fetch_view(ctx, request, account_id)  # 404 / 503 as JSON errors
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        await resp.prepare(request)
        await RiskStream(ctx, hub, stats, request, resp, account_id).run(first)
        return resp
