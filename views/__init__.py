"""HTTP routes on Faust web views (CONTRACT.md section 7)."""

from __future__ import annotations

from app.faust_app import FundedFlow


def register(ff: FundedFlow) -> None:
    from views import accounts, admin, breaches, openapi, system
    from views.context import WebContext

    ctx = WebContext.create(ff)
    ff.extras["web"] = ctx
    accounts.register(ctx)
    breaches.register(ctx)
    admin.register(ctx)
    system.register(ctx)
    openapi.register(ctx)
