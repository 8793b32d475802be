"""Admin routes: the pending queue, approval (with the re-check) and rejection.

The decisions take an Idempotency-Key, scoped to the admin, as /withdraw does (views/replay.py).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from faust.web import View

from app.auth import Principal
from app.idempotency import fingerprint
from domain.events import ApproveWithdrawal, RejectWithdrawal
from domain.ids import account_of_withdrawal
from domain.validation import MAX_TEXT_LENGTH, InvalidText, check_reason
from views.accounts import decide_and_settle, fetch_from_owner, reply_answer
from views.budget import Deadline
from views.commands import submit
from views.context import WebContext
from views.http import ApiError, api, json_response, page, read_json_object, require_admin
from views.replay import key_digest, remember, replay, request_key
from views.routing import at_owner


def _owner_of(withdrawal_id: str) -> str:
    account_id = account_of_withdrawal(withdrawal_id)
    if account_id is None:
        raise ApiError(404, "not_found", "withdrawal not found")
    return account_id


def _decision_event_id(verb: str, withdrawal_id: str, principal: Principal, key: str | None) -> str:
    """The command's event id. With an Idempotency-Key it is derived from (admin, key), so a
    repeat is the same command to the account agent, which applies it once (its applied-ids memory)
    even when Redis lost the first answer; without a key each request is a new decision."""
    suffix = uuid.uuid4().hex if key is None else key_digest(principal.user_id, key)
    return f"{verb}:{withdrawal_id}:{suffix}"


def _reason(body: dict[str, Any]) -> str:
    """The reason as the command parser reads it (domain/validation.py): stripped of the white
    space around it, then 1 to 500 characters. The stripped text is the reason everywhere (the
    command, the Idempotency-Key's fingerprint, the withdrawal's `rejection_reason`)."""
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "invalid_request", "'reason' must be a string")
    required = f"'reason' is required, 1 to {MAX_TEXT_LENGTH} characters"
    if reason is None:
        raise ApiError(422, "invalid_reason", required)
    try:
        return check_reason(reason)
    except InvalidText as exc:
        raise ApiError(422, "invalid_reason", f"'reason' {exc.reason}; {required}") from None


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
                key = request_key(request)
                # An approval has no parameters and its body is ignored: the request is its
                # route (which names the withdrawal), so another body is the same request.
                print_ = fingerprint(request.path, {})
                replayed = await replay(ctx, principal, key, print_)
                if replayed is not None:
                    return replayed
                if not ctx.has_withdrawal(account_id, withdrawal_id):
                    raise ApiError(404, "not_found", "withdrawal not found")
                cmd = ApproveWithdrawal(
                    event_id=_decision_event_id("approve", withdrawal_id, principal, key),
                    account_id=account_id,
                    withdrawal_id=withdrawal_id,
                    admin_id=principal.user_id,
                    at=datetime.now(UTC),
                )
                status, answer = await decide_and_settle(ctx.ff, cmd, withdrawal_id)
                status = 200 if status == 201 else status
                await remember(ctx, principal, key, print_, status, answer)
                return json_response(answer, status)

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
                key = request_key(request)
                reason = _reason(body)
                print_ = fingerprint(request.path, {"reason": reason})
                replayed = await replay(ctx, principal, key, print_)
                if replayed is not None:
                    return replayed
                if not ctx.has_withdrawal(account_id, withdrawal_id):
                    raise ApiError(404, "not_found", "withdrawal not found")
                # A repeat of this key with another reason (Redis lost the first answer) is
                # refused by the account agent itself: `idempotency_key_reused`, 409.
                event_id = _decision_event_id("reject", withdrawal_id, principal, key)
                cmd = RejectWithdrawal(
                    event_id=event_id,
                    account_id=account_id,
                    withdrawal_id=withdrawal_id,
                    admin_id=principal.user_id,
                    reason=reason,
                    at=datetime.now(UTC),
                )
                status, answer = reply_answer((await submit(ctx.ff, cmd, Deadline.start())).reply)
                status = 200 if status == 201 else status
                await remember(ctx, principal, key, print_, status, answer)
                return json_response(answer, status)

            return await at_owner(ctx.ff, request, account_id, local)

    app.page("/admin/withdrawals/{withdrawal_id}/approve")(Approve)
    app.page("/admin/withdrawals/{withdrawal_id}/reject")(Reject)
