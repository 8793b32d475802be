"""`GET /funded-accounts/{id}/breaches`: the account's `rules.violation-detected` facts.

Who may see them is decided where the other account routes decide it, at the account's owner
(its table says whose account it is; an admin may read any); the facts come from PostgreSQL
(`app/breaches.py`), so a breach appears here once the sink has written it (normally well under
a second after it happened). Each fact is passed on as the JSON PostgreSQL keeps, never parsed
into Python numbers on the way: the answer holds the facts as published (jsonb may order their
keys otherwise), evidence and its digest included.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.breaches import BREACHES_SQL, MAX_BREACHES, breach_params
from views.context import WebContext
from views.http import api, page
from views.routing import at_owner

__all__ = ["breaches_body", "register"]


def breaches_body(payloads: list[str]) -> bytes:
    """`{"breaches": [...]}` around facts that are already JSON text."""
    return b'{"breaches":[' + b",".join(p.encode() for p in payloads) + b"]}"


def register(ctx: WebContext) -> None:
    @page(ctx.ff.app, "/funded-accounts/{account_id}/breaches")
    @api
    async def account_breaches(self: Any, request: web.Request, account_id: str) -> web.Response:
        principal = ctx.principal(request)

        async def local() -> web.Response:
            ctx.visible_account(account_id, principal, admin_may_read=True)
            rows = await ctx.query(BREACHES_SQL, **breach_params(account_id, MAX_BREACHES))
            return web.Response(
                body=breaches_body([row["payload"] for row in rows]),
                content_type="application/json",
            )

        return await at_owner(ctx.ff, request, account_id, local)
