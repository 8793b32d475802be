"""What the views of one worker share: token verifier, rate limiter, idempotency store, and
the read side of PostgreSQL for lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import Principal, TokenVerifier
from app.db import create_engine
from app.faust_app import FundedFlow
from app.idempotency import IdempotencyStore
from app.ratelimit import RateLimiter
from app.topics import WITHDRAWAL_ARCHIVE_TABLE
from domain.state import AccountState
from tables.accounts import account_key, load
from views.http import ApiError, unavailable


@dataclass
class WebContext:
    ff: FundedFlow
    verifier: TokenVerifier
    limiter: RateLimiter
    idempotency: IdempotencyStore
    _engine: AsyncEngine | None = None

    @classmethod
    def create(cls, ff: FundedFlow) -> WebContext:
        s = ff.settings
        limiter = RateLimiter(s.redis_url, s.rate_limit_per_minute, prefix=s.topic_prefix)
        return cls(
            ff=ff,
            verifier=TokenVerifier(s),
            limiter=limiter,
            idempotency=IdempotencyStore(limiter.redis, prefix=s.topic_prefix),
        )

    def principal(self, request: web.Request) -> Principal:
        return self.verifier.verify(request.headers.get("Authorization"))

    def account(self, account_id: str) -> AccountState | None:
        """This worker's copy of the account (the owner's is the authoritative one)."""
        state, _ = load(self.ff.extras["accounts"].get(account_id))
        return state

    def has_withdrawal(self, account_id: str, withdrawal_id: str) -> bool:
        """Whether this worker's tables know the withdrawal (in the value or archived)."""
        state = self.account(account_id)
        if state is None:
            return False
        if withdrawal_id in state.withdrawals:
            return True
        archive = self.ff.extras[WITHDRAWAL_ARCHIVE_TABLE]
        return archive.get(account_key(account_id, withdrawal_id)) is not None

    def visible_account(
        self, account_id: str, principal: Principal, admin_may_read: bool = False
    ) -> AccountState:
        """The account if the caller may see it; 404 otherwise (no hint that it exists).

        Admins may read any account (the pending queue shows each request's account) but act
        only through the admin routes: a withdrawal is requested by its owner alone."""
        state = self.account(account_id)
        mine = state is not None and state.user_id == principal.user_id
        if state is None or not (mine or (admin_may_read and principal.is_admin)):
            raise ApiError(404, "not_found", "funded account not found")
        return state

    async def rate_limit(self, principal: Principal) -> None:
        verdict = await self.limiter.check(principal.user_id)
        if not verdict.allowed:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {self.ff.settings.rate_limit_per_minute} requests in a minute",
                {"Retry-After": str(verdict.retry_after)},
            )

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(
                self.ff.settings.database_url, schema=self.ff.settings.db_schema, pool_size=5
            )
        return self._engine

    async def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        try:
            async with self.engine.connect() as conn:
                result = await conn.execute(text(sql), params)
                return [dict(row._mapping) for row in result]
        except OSError as exc:
            raise unavailable(f"the database cannot be reached: {exc}") from None
        except Exception as exc:
            if "connect" in str(exc).lower():
                raise unavailable("the database cannot be reached") from None
            raise
