"""The database's view of an account: rows for the system of record, with the state version.

The account agent sends one snapshot per applied change; the sink turns it into upserts that
only take a newer version, so a replay never moves a row backwards.

A rule-pack account's balances row also carries its day (`day_figures`): the figures of the
stored state, as of its last applied change. A read rolls an idle account over to today on the
fly (CONTRACT section 4a); the row does not, so it names its `trading_day`, and a
`locked_until` already past means the lock is over (it is cleared at the account's next input).
The gate counters include the current day and do not change when a day is rolled over.
A legacy account's snapshot has none of these keys (the columns stay NULL).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from domain.money import format_cents
from domain.state import AccountState
from domain.timestamps import format_ts
from domain.withdrawals import Withdrawal


def _ts(value: Any) -> str | None:
    return None if value is None else format_ts(value)


def withdrawal_ids_in(facts: Iterable[dict[str, Any]]) -> list[str]:
    """The withdrawals the facts speak of, in order, each once."""
    seen: dict[str, None] = {}
    for fact in facts:
        wid = fact.get("withdrawal_id")
        if isinstance(wid, str):
            seen.setdefault(wid)
    return list(seen)


def day_figures(state: AccountState) -> dict[str, Any]:
    """The day columns of a rule-pack account's balances row; empty for a legacy tier.

    `trading_days` and `winning_days` count as the payout gates do, the current day included
    (`GET .../payout-eligibility` shows the same figures); `winning_days` is None when the pack
    has no `min_winning_days` (a winning day is only defined by its `min_profit`).
    """
    book = state.book
    terms = state.pack
    if book is None or terms is None:
        return {}
    winning = terms.pack.min_winning_days
    return {
        "trading_day": book.day.isoformat(),
        "day_resets_at": format_ts(book.day_end),
        "day_anchor": format_cents(book.day_anchor_cents),
        "day_pnl": format_cents(book.day_pnl_cents(state.realized_pnl_cents)),
        "locked_until": _ts(book.locked_until),
        "trading_days": book.trading_days_so_far(),
        "winning_days": (
            None
            if winning is None
            else book.winning_days_so_far(state.realized_pnl_cents, winning.min_profit_cents)
        ),
    }


def snapshot(
    state: AccountState, withdrawal_ids: Iterable[str] = (), archived: Iterable[Withdrawal] = ()
) -> dict[str, Any]:
    """Rows for `funded_accounts`, `funded_virtual_accounts` and the named `withdrawals` (found
    in the value, or among `archived`: those that just left it)."""
    out = {w.withdrawal_id: w for w in archived}
    withdrawals = []
    for wid in withdrawal_ids:
        w = state.withdrawals.get(wid) or out.get(wid)
        if w is None:
            continue
        withdrawals.append(
            {
                "id": w.withdrawal_id,
                "funded_account_id": state.account_id,
                "user_id": w.user_id,
                "amount": format_cents(w.amount_cents),
                "status": w.status,
                "requested_at": format_ts(w.requested_at),
                "approved_at": _ts(w.approved_at),
                "completed_at": _ts(w.completed_at),
                "rejected_at": _ts(w.rejected_at),
                "rejection_reason": w.rejection_reason,
                "stripe_payout_id": w.stripe_payout_id,
                "approved_by": w.approved_by,
                "reversed_total": format_cents(w.reversed_cents),
            }
        )
    return {
        "account_id": state.account_id,
        "version": state.version,
        "account": {
            "id": state.account_id,
            "user_id": state.user_id,
            "assessment_id": state.assessment_id,
            "tier_id": state.tier.tier_id,
            "status": state.status,
            "activated_at": format_ts(state.activated_at),
            "closed_at": _ts(state.closed_at),
            "closure_reason": state.closure_reason,
        },
        "balances": {
            "id": f"fva_{state.account_id}",
            "funded_account_id": state.account_id,
            "starting_balance": format_cents(state.starting_balance_cents),
            "current_balance": format_cents(state.current_balance_cents),
            "peak_balance": format_cents(state.peak_balance_cents),
            "realized_pnl": format_cents(state.realized_pnl_cents),
            "unrealized_pnl": format_cents(state.unrealized_pnl_cents),
            "total_withdrawals": format_cents(state.total_withdrawals_cents),
            "updated_at": format_ts(state.updated_at),
            **day_figures(state),
        },
        "withdrawals": withdrawals,
    }
