"""Admin routes: the pending queue, approval (with the re-check) and rejection."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from faust.web import View

from domain.events import ApproveWithdrawal, RejectWithdrawal
from domain.ids import account_of_withdrawal
from views.accounts import fetch_from_owner, reply_answer
from views.commands import settled, submit, watch_withdrawal
from views.context import WebContext
from views.http import ApiError, api, json_response, page, read_json_object, require_admin
from views.routing import at_owner

MAX_REASON = 500


def _owner_of(withdrawal_id: str) -> str:
    account_id = account_of_withdrawal(withdrawal_id)
    if account_id is None:
        raise ApiError(404, "not_found", "withdrawal not found")
    return account_id


def register(ctx: WebContext) -> None:
    app = ctx.ff.app

    @page(app, "/admin/withdrawals/pending")
    @api
    async def pending(self: Any, request: web.Request) -> web.Response:
        require_admin(ctx.principal(request))
        rows = await ctx.query(
            "SELECT id, funded_account_id, user_id FROM withdrawals "
            "WHERE status = 'pending' ORDER BY requested_at, id"
        )
        accounts = sorted({r["funded_account_id"] for r in rows})
        fetched = await asyncio.gather(
            *(fetch_from_owner(ctx, request, a) for a in accounts),
            *(fetch_from_owner(ctx, request, a, withdrawals=True) for a in accounts),
        )
        details = dict(zip(accounts, fetched[: len(accounts)], strict=True))
        lists = dict(zip(accounts, fetched[len(accounts) :], strict=True))
        out = []
        for r in rows:
            detail = details.get(r["funded_account_id"])
            listed = lists.get(r["funded_account_id"])
            if detail is None or listed is None:
                continue
            # The table is newer than the database: list what is still pending there.
            current = next((w for w in listed["withdrawals"] if w["id"] == r["id"]), None)
            if current is None or current["status"] != "pending":
                continue
            out.append(
                {
                    **current,
                    "user_id": r["user_id"],
                    "account": {
                        k: detail[k]
                        for k in (
                            "id",
                            "status",
                            "starting_balance",
                            "current_balance",
                            "peak_balance",
                            "realized_pnl",
                            "unrealized_pnl",
                            "total_withdrawals",
                            "withdrawable_amount",
                        )
                    },
                }
            )
        return json_response({"withdrawals": out})

    class Approve(View):
        @api
        async def post(self, request: web.Request, withdrawal_id: str) -> web.Response:
            principal = ctx.principal(request)
            require_admin(principal)
            account_id = _owner_of(withdrawal_id)

            async def local() -> web.Response:
                await ctx.rate_limit(principal)
                state = ctx.account(account_id)
                if state is None or withdrawal_id not in state.withdrawals:
                    raise ApiError(404, "not_found", "withdrawal not found")
                watcher = watch_withdrawal(ctx.ff, withdrawal_id)
                cmd = ApproveWithdrawal(
                    event_id=f"approve:{withdrawal_id}:{uuid.uuid4().hex}",
                    account_id=account_id,
                    withdrawal_id=withdrawal_id,
                    admin_id=principal.user_id,
                    at=datetime.now(UTC),
                )
                status, answer = reply_answer((await submit(ctx.ff, cmd)).reply)
                withdrawal = answer.get("withdrawal")
                if withdrawal is not None and withdrawal["status"] == "approved":
                    done = await settled(ctx.ff, withdrawal_id, watcher)
                    if done is not None:
                        answer = {"withdrawal": done}
                return json_response(answer, 200 if status == 201 else status)

            return await at_owner(ctx.ff, request, account_id, local)

    class Reject(View):
        @api
        async def post(self, request: web.Request, withdrawal_id: str) -> web.Response:
            principal = ctx.principal(request)
            require_admin(principal)
            account_id = _owner_of(withdrawal_id)

            async def local() -> web.Response:
                await ctx.rate_limit(principal)
                body = await read_json_object(request)
                reason = body.get("reason")
                if reason is not None and not isinstance(reason, str):
                    raise ApiError(400, "invalid_request", "'reason' must be a string")
                if not reason or not reason.strip() or len(reason) > MAX_REASON:
                    raise ApiError(
                        422, "invalid_reason", f"'reason' is required, 1 to {MAX_REASON} characters"
                    )
                state = ctx.account(account_id)
                if state is None or withdrawal_id not in state.withdrawals:
                    raise ApiError(404, "not_found", "withdrawal not found")
                cmd = RejectWithdrawal(
                    event_id=f"reject:{withdrawal_id}:{uuid.uuid4().hex}",
                    account_id=account_id,
                    withdrawal_id=withdrawal_id,
                    admin_id=principal.user_id,
                    reason=reason,
                    at=datetime.now(UTC),
                )
                status, answer = reply_answer((await submit(ctx.ff, cmd)).reply)
                return json_response(answer, 200 if status == 201 else status)

            return await at_owner(ctx.ff, request, account_id, local)

    app.page("/admin/withdrawals/{withdrawal_id}/approve")(Approve)
    app.page("/admin/withdrawals/{withdrawal_id}/reject")(Reject)
