"""A recording Stripe double on loopback.

stripe-mock checks request shapes but is stateless and ignores idempotency keys; this double
keeps transfers, answers a repeated idempotency key with the first transfer (as Stripe does),
and counts how many transfers were really created per withdrawal. Destinations starting with
`acct_refuse` are refused with a 400, as Stripe refuses an unusable connected account, and
those starting with `acct_decline` with a 402 (a request that was valid but failed).

Faults for the retry tests are armed by count (`fail_next_with_500 = 2`: the next two POSTs
fail): 5xx answers, 429 rate limits and connections closed without an answer, each either
before the transfer is made or after it (the answer is lost on its way back).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web


class StripeDouble:
    def __init__(self) -> None:
        self.transfers: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}
        self.created_per_withdrawal: Counter[str] = Counter()
        self.requests = 0
        self.fail_next_with_500 = 0
        # Make the transfer, then answer 500 anyway (the answer is lost on its way back).
        self.fail_after_create_with_500 = 0
        # Answer 429 rate_limit, as Stripe does when a key sends too many requests at once.
        self.rate_limit_next = 0
        # Close the connection without an answer (a connection reset seen by the client).
        self.reset_next = 0
        self.reset_after_create = 0
        # Every POST /v1/transfers by metadata[withdrawal_id], failed ones included.
        self.posts_per_withdrawal: Counter[str] = Counter()
        # The Idempotency-Key header and arrival time (monotonic) of each of those POSTs.
        self.keys_per_withdrawal: dict[str, list[str]] = {}
        self.post_times: dict[str, list[float]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def disarm(self) -> None:
        """Clear every armed fault, so a test that failed early cannot leak one to the next."""
        with self._lock:
            self.fail_next_with_500 = 0
            self.fail_after_create_with_500 = 0
            self.rate_limit_next = 0
            self.reset_next = 0
            self.reset_after_create = 0

    # -- handlers ------------------------------------------------------------------------------
    @staticmethod
    def _hang_up(request: web.Request) -> web.Response:
        """Drop the connection with no answer at all: the client sees it closed under it."""
        transport = request.transport
        assert transport is not None
        transport.abort()
        # Nothing can be written any more; aiohttp drops this once it sees the closed transport.
        return web.Response(status=204)

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        key = request.headers.get("Idempotency-Key", "")
        wid = str(form.get("metadata[withdrawal_id]", "?"))
        with self._lock:
            self.requests += 1
            self.posts_per_withdrawal[wid] += 1
            self.keys_per_withdrawal.setdefault(wid, []).append(key)
            self.post_times.setdefault(wid, []).append(time.monotonic())
            if self.fail_next_with_500 > 0:
                self.fail_next_with_500 -= 1
                return web.json_response(
                    {"error": {"type": "api_error", "message": "boom"}}, status=500
                )
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return web.json_response(
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "rate_limit",
                            "message": "Too many requests hit the API too quickly.",
                        }
                    },
                    status=429,
                )
            if self.reset_next > 0:
                self.reset_next -= 1
                return self._hang_up(request)
            if key and key in self.by_key:
                return web.json_response(self.transfers[self.by_key[key]])
            destination = str(form.get("destination", ""))
            if destination.startswith("acct_refuse"):
                return web.json_response(
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "account_invalid",
                            "message": "No such destination",
                            "param": "destination",
                        }
                    },
                    status=400,
                )
            if destination.startswith("acct_decline"):
                return web.json_response(
                    {
                        "error": {
                            "type": "card_error",
                            "code": "card_declined",
                            "message": "The destination declined the transfer.",
                        }
                    },
                    status=402,
                )
            tid = f"tr_double_{next(self._ids)}"
            metadata = {
                k[len("metadata[") : -1]: str(v)
                for k, v in form.items()
                if k.startswith("metadata[")
            }
            transfer = {
                "id": tid,
                "object": "transfer",
                "amount": int(str(form["amount"])),
                "currency": str(form.get("currency")),
                "destination": destination,
                "transfer_group": str(form.get("transfer_group", "")) or None,
                "metadata": metadata,
            }
            self.transfers[tid] = transfer
            if key:
                self.by_key[key] = tid
            self.created_per_withdrawal[metadata.get("withdrawal_id", "?")] += 1
            if self.fail_after_create_with_500 > 0:
                self.fail_after_create_with_500 -= 1
                return web.json_response(
                    {"error": {"type": "api_error", "message": "boom after create"}}, status=500
                )
            if self.reset_after_create > 0:
                self.reset_after_create -= 1
                return self._hang_up(request)
        return web.json_response(transfer)

    async def _list(self, request: web.Request) -> web.Response:
        group = request.query.get("transfer_group")
        with self._lock:
            data = [
                t for t in self.transfers.values() if group is None or t["transfer_group"] == group
            ]
        return web.json_response(
            {"object": "list", "data": data, "has_more": False, "url": "/v1/transfers"}
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/transfers", self._create)
            app.router.add_get("/v1/transfers", self._list)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
