"""Idempotency-Key on the POST routes: the first answer to a key is the answer to its repeats.

Keys are scoped per user (the trader for /withdraw, the admin for the admin routes) and kept in
Redis (app/idempotency.py). Redis is the fast path only: each route also derives what it creates
from the key (the withdrawal id, or the decision's event id), so a repeat after Redis lost the
answer still creates or decides nothing new.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from app.auth import Principal
from app.idempotency import StoredAnswer
from domain.validation import poison_in
from views.context import WebContext
from views.http import ApiError, json_response

HEADER = "Idempotency-Key"


def request_key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    # Header bytes that are not UTF-8 reach us as surrogate escapes: a lone surrogate here.
    if key is not None and poison_in(key) is not None:
        raise ApiError(400, "invalid_request", f"'{HEADER}' must be UTF-8 text without NUL")
    return key


def key_reused() -> ApiError:
    return ApiError(409, "idempotency_key_reused", f"this {HEADER} was used with another request")


async def replay(
    ctx: WebContext, principal: Principal, key: str | None, print_: str
) -> web.Response | None:
    """The stored first answer to this key, 409 if the key was used for another request, or
    None when there is none (no key, a new key, or Redis lost or cannot give the answer)."""
    if key is None:
        return None
    stored = await ctx.idempotency.get(principal.user_id, key)
    if stored is None:
        return None
    if stored.fingerprint != print_:
        raise key_reused()
    return json_response(stored.body, stored.status)


async def remember(
    ctx: WebContext,
    principal: Principal,
    key: str | None,
    print_: str,
    status: int,
    answer: dict[str, Any],
) -> None:
    """Keep `answer` as the key's first answer. Two answers are not the key's to keep: a 5xx
    (nothing was decided, a retry may be) and `idempotency_key_reused` (the agent found the
    key's first request under it; storing this one would make that request's repeat a 409)."""
    if key is None or status >= 500 or _code(answer) == "idempotency_key_reused":
        return
    await ctx.idempotency.put(principal.user_id, key, StoredAnswer(print_, status, answer))


def _code(answer: dict[str, Any]) -> str | None:
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def key_digest(user_id: str, key: str) -> str:
    """A short stable name for (user, key), for ids derived from a key."""
    return hashlib.sha256(f"{user_id}\x00{key}".encode()).hexdigest()[:32]
