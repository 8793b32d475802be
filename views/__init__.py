"""HTTP routes on Faust web views (CONTRACT.md section 7)."""

from __future__ import annotations

from app.faust_app import FundedFlow


def register(ff: FundedFlow) -> None:
    from app.riskfeed import RiskHub
    from views import accounts, admin, breaches, openapi, pages, riskstream, system
    from views.context import WebContext

    ctx = WebContext.create(ff)
    ff.extras["web"] = ctx
    hub = ff.extras["risk_hub"] = RiskHub(ff.settings.redis_url, ff.settings.topic_prefix)

    @ff.app.task  # type: ignore[untyped-decorator]
    async def follow_risk_feed() -> None:
        await hub.run(enabled=ff.settings.risk_feed)

    accounts.register(ctx)
    breaches.register(ctx)
    riskstream.register(ctx)
    pages.register(ctx)
    admin.register(ctx)
    system.register(ctx)
    openapi.register(ctx)
