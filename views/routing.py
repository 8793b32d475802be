"""Any worker answers any request: the owner of an account's partition does the work.

Faust's `table_route` forwards without the request body and without a timeout, and it hashes
the JSON form of a str key, while our producers partition by the raw account id. So the owner
is found here from the raw key, and a request is forwarded whole (body included) with a bounded
wait that outlasts everything the owner may wait for (views/budget.py), so a forwarded request
never answers 503 for something the owner answered. A forwarded request that lands on a worker
that is no longer the owner (a rebalance in between) answers 503 instead of bouncing on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from app.faust_app import FundedFlow
from app.topics import ACCOUNTS_TABLE
from views.budget import FORWARD_TIMEOUT_SECONDS
from views.http import unavailable

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-FundedFlow-Forwarded"
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def owner_url(ff: FundedFlow, account_id: str) -> URL:
    app = ff.app
    if app.rebalancing:
        raise unavailable("the workers are rebalancing; try again shortly")
    topic = ff.names.changelog(ACCOUNTS_TABLE)
    try:
        tp = app.producer.key_partition(topic, account_id.encode())
        tps_url: Any = getattr(app.assignor, "_tps_url")  # noqa: B009 - no public API
        return URL(tps_url[tp])
    except (KeyError, AttributeError):
        raise unavailable("the owner of this account is not known yet") from None


def is_local(ff: FundedFlow, url: URL) -> bool:
    own = URL(str(ff.app.conf.canonical_url))
    return (url.host, url.port) == (own.host, own.port)


async def forward(ff: FundedFlow, request: web.Request, url: URL) -> web.Response:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
    headers[FORWARDED_HEADER] = "1"
    target = url.with_path(request.rel_url.path).with_query(request.rel_url.query)
    session = ff.extras.get("http_session")
    if session is None:
        session = ff.extras["http_session"] = aiohttp.ClientSession()
    try:
        async with session.request(
            request.method,
            target,
            data=body if body else None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
        ) as resp:
            payload = await resp.read()
            out_headers = {}
            if "Retry-After" in resp.headers:
                out_headers["Retry-After"] = resp.headers["Retry-After"]
            return web.Response(
                body=payload,
                status=resp.status,
                content_type=resp.content_type,
                headers=out_headers,
            )
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("forwarding %s %s to %s failed: %s", request.method, request.path, url, exc)
        raise unavailable("the worker that owns this account cannot be reached") from None


async def at_owner(
    ff: FundedFlow,
    request: web.Request,
    account_id: str,
    local: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    url = owner_url(ff, account_id)
    if is_local(ff, url):
        return await local()
    if request.headers.get(FORWARDED_HEADER):
        raise unavailable("account ownership is moving between workers")
    return await forward(ff, request, url)
