"""Trader routes: the caller's accounts, one account, its withdrawals, and a withdrawal request.

Lists come from PostgreSQL (which accounts a user has) joined with the owners' tables (their
figures), so balances are always current while a brand-new account appears in the list once the
sink has written it (within the sink's lag, normally well under 2 s). One account and its
withdrawals are read from the owner's table: read-your-writes from any worker.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from faust.web import View

from app.faust_app import FundedFlow
from app.idempotency import fingerprint
from domain.account import Reply
from domain.events import RequestWithdrawal
from domain.ids import withdrawal_id_for
from domain.money import InvalidAmount, parse_money
from domain.policy import Code, eligibility
from domain.state import AccountState
from domain.validation import InvalidText, check_text
from domain.withdrawals import from_row
from views.budget import Deadline
from views.commands import WireCommand, settled, submit, unwatch, watch_withdrawal
from views.context import WebContext
from views.http import (
    ApiError,
    api,
    json_response,
    page,
    read_json_object,
    unavailable,
)
from views.replay import key_reused, remember, replay, request_key
from views.routing import at_owner, forward, is_local, owner_url

SUMMARY_FIELDS = (
    "id",
    "status",
    "tier_id",
    "activated_at",
    "closed_at",
    "closure_reason",
    "starting_balance",
    "current_balance",
    "peak_balance",
    "realized_pnl",
    "unrealized_pnl",
    "total_withdrawals",
    "withdrawable_amount",
    "withdrawals",
)

# A refused reply's code to its HTTP status (any other code is 422). `invalid_request`: the
# account agent could not take the command at all; `idempotency_key_reused`: a repeat of an
# Idempotency-Key with another body that reached the agent (Redis had lost the first answer).
REFUSAL_STATUS = {
    "not_pending": 409,
    "unknown_withdrawal": 404,
    "unknown_account": 404,
    "invalid_request": 400,
    "idempotency_key_reused": 409,
}


def reply_answer(reply: Reply | None) -> tuple[int, dict[str, Any]]:
    if reply is None:
        raise unavailable("the account gave no answer; try again")
    if reply.accepted:
        return 201, reply.to_wire()
    return REFUSAL_STATUS.get(reply.code or "", 422), reply.to_wire()


async def decide_and_settle(
    ff: FundedFlow, cmd: WireCommand, withdrawal_id: str
) -> tuple[int, dict[str, Any]]:
    """The account agent's answer to a command; when it approves the withdrawal, the answer
    waits (within the same budget) for the transfer, so it says `completed` or `failed`."""
    deadline = Deadline.start()
    watcher = watch_withdrawal(ff, withdrawal_id)
    try:
        status, answer = reply_answer((await submit(ff, cmd, deadline)).reply)
        withdrawal = answer.get("withdrawal")
        if withdrawal is not None and withdrawal["status"] == "approved":
            done = await settled(ff, withdrawal_id, watcher, deadline)
            if done is not None:
                answer = {"withdrawal": done}
    finally:
        unwatch(ff, withdrawal_id, watcher)
    return status, answer


def _text_field(body: dict[str, Any], name: str, refusal: str) -> str:
    """A free-text field checked as the command parser checks it (domain/validation.py), so
    what passes here parses there; text it refuses is the field's business refusal (422)."""
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f"'{name}' must be a string")
    try:
        return check_text(value)
    except InvalidText as exc:
        raise ApiError(422, refusal, f"'{name}' {exc.reason}") from None


def _amount(body: dict[str, Any]) -> int:
    if "amount" not in body:
        raise ApiError(422, "invalid_amount", "'amount' is required")
    value = body["amount"]
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ApiError(400, "invalid_request", "'amount' must be a decimal string or a number")
    try:
        cents = parse_money(value)
    except InvalidAmount as exc:
        raise ApiError(422, "invalid_amount", f"invalid amount: {exc.reason}") from None
    if cents <= 0:
        raise ApiError(422, "invalid_amount", "the amount must be positive")
    return cents


async def fetch_from_owner(
    ctx: WebContext, request: web.Request, account_id: str, withdrawals: bool = False
) -> dict[str, Any] | None:
    """One account's detail (or its withdrawals), from this worker's table or its owner's,
    with the caller's own token: the owner decides what the caller may see."""
    url = owner_url(ctx.ff, account_id)
    if is_local(ctx.ff, url):
        state = ctx.account(account_id)
        if state is None:
            return None
        if withdrawals:
            return {"withdrawals": state.withdrawals_wire()}
        return state.as_of(datetime.now(UTC)).to_wire_detail()
    path = f"/funded-accounts/{account_id}" + ("/withdrawals" if withdrawals else "")
    resp = await forward(ctx.ff, request.clone(rel_url=path, method="GET"), url)
    if resp.status == 404:
        return None
    if resp.status != 200 or not isinstance(resp.body, bytes):
        raise unavailable("an account's owner did not answer")
    answer: dict[str, Any] = json.loads(resp.body)
    return answer


async def withdrawal_history(ctx: WebContext, state: AccountState) -> list[dict[str, Any]]:
    """Every withdrawal of the account, newest `requested_at` first: those in its value (open
    ones and the latest settled, as of the last input applied) and the older settled ones,
    which left the value and are read from PostgreSQL (the sink wrote them before they left)."""
    listed = {w.withdrawal_id: w for w in state.withdrawals.values()}
    rows = await ctx.query(
        "SELECT id, user_id, amount, status, requested_at, approved_at, approved_by, "
        "completed_at, rejected_at, rejection_reason, stripe_payout_id, reversed_total "
        "FROM withdrawals WHERE funded_account_id = :account_id",
        account_id=state.account_id,
    )
    for row in rows:
        if row["id"] not in listed:
            listed[row["id"]] = from_row(row)
    ordered = sorted(listed.values(), key=lambda w: (w.requested_at, w.withdrawal_id), reverse=True)
    return [w.to_wire(state.account_id) for w in ordered]


def register(ctx: WebContext) -> None:
    app = ctx.ff.app

    @page(app, "/funded-accounts")
    @api
    async def list_accounts(self: Any, request: web.Request) -> web.Response:
        principal = ctx.principal(request)
        rows = await ctx.query(
            "SELECT id FROM funded_accounts WHERE user_id = :user_id", user_id=principal.user_id
        )
        details = await asyncio.gather(*(fetch_from_owner(ctx, request, r["id"]) for r in rows))
        accounts = [
            {k: d[k] for k in SUMMARY_FIELDS}
            for d in details
            if d is not None and (d["user_id"] == principal.user_id)
        ]
        accounts.sort(key=lambda a: (a["activated_at"], a["id"]), reverse=True)
        return json_response({"funded_accounts": accounts})

    @page(app, "/funded-accounts/{account_id}")
    @api
    async def account_detail(self: Any, request: web.Request, account_id: str) -> web.Response:
        principal = ctx.principal(request)

        async def local() -> web.Response:
            state = ctx.visible_account(account_id, principal, admin_may_read=True)
            # A rule-pack account idle since an earlier day is shown as of today.
            return json_response(state.as_of(datetime.now(UTC)).to_wire_detail())

        return await at_owner(ctx.ff, request, account_id, local)

    @page(app, "/funded-accounts/{account_id}/payout-eligibility")
    @api
    async def payout_eligibility(self: Any, request: web.Request, account_id: str) -> web.Response:
        principal = ctx.principal(request)

        async def local() -> web.Response:
            state = ctx.visible_account(account_id, principal, admin_may_read=True)
            return json_response(eligibility(state, datetime.now(UTC)))

        return await at_owner(ctx.ff, request, account_id, local)

    @page(app, "/funded-accounts/{account_id}/withdrawals")
    @api
    async def account_withdrawals(self: Any, request: web.Request, account_id: str) -> web.Response:
        principal = ctx.principal(request)

        async def local() -> web.Response:
            state = ctx.visible_account(account_id, principal, admin_may_read=True)
            return json_response({"withdrawals": await withdrawal_history(ctx, state)})

        return await at_owner(ctx.ff, request, account_id, local)

    class Withdraw(View):
        @api
        async def post(self, request: web.Request, account_id: str) -> web.Response:
            principal = ctx.principal(request)

            async def local() -> web.Response:
                # Counted here, at the owner, so a forwarded request is counted once.
                await ctx.rate_limit(principal)
                body = await read_json_object(request)
                key = request_key(request)
                amount_cents = _amount(body)
                payment_method = _text_field(
                    body, "payment_method", Code.UNSUPPORTED_PAYMENT_METHOD
                )
                destination = _text_field(body, "destination", Code.INVALID_DESTINATION)
                # The request as understood, not its JSON text: key order, "250" against
                # "250.00" or an unknown extra field do not make it another request.
                print_ = fingerprint(
                    request.path,
                    {
                        "amount_cents": amount_cents,
                        "payment_method": payment_method,
                        "destination": destination,
                    },
                )
                replayed = await replay(ctx, principal, key, print_)
                if replayed is not None:
                    return replayed
                state = ctx.visible_account(account_id, principal)
                wid = withdrawal_id_for(account_id, principal.user_id, key)
                existing = state.withdrawals.get(wid)
                if existing is not None:
                    # The key was used before and Redis lost its answer: the withdrawal the key
                    # names is the first request's, so the whole request must match it.
                    if (existing.amount_cents, existing.payment_method, existing.destination) != (
                        amount_cents,
                        payment_method,
                        destination,
                    ):
                        raise key_reused()
                    answer = {"withdrawal": existing.to_wire(account_id)}
                    await remember(ctx, principal, key, print_, 201, answer)
                    return json_response(answer, 201)
                cmd = RequestWithdrawal(
                    event_id=f"request:{wid}",
                    account_id=account_id,
                    user_id=principal.user_id,
                    withdrawal_id=wid,
                    amount_cents=amount_cents,
                    payment_method=payment_method,
                    destination=destination,
                    requested_at=datetime.now(UTC),
                )
                status, answer = await decide_and_settle(ctx.ff, cmd, wid)
                await remember(ctx, principal, key, print_, status, answer)
                return json_response(answer, status)

            return await at_owner(ctx.ff, request, account_id, local)

    app.page("/funded-accounts/{account_id}/withdraw")(Withdraw)
