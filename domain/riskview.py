"""The risk view of an account: what the live feed sends (CONTRACT section 7, `/risk/stream`).

Balances, equity, every rule reading (with `remaining` and `floor`), open positions, and for a
rule-pack account the trading day, its reset instant and the lock, as of a given instant (an idle
account is rolled over to that instant's day, as a read does). `version` is the account's state
version: a client that has a view of version v has seen every change up to v.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.money import format_cents
from domain.state import AccountState
from domain.timestamps import format_ts

__all__ = ["risk_view"]


def risk_view(state: AccountState, at: datetime) -> dict[str, Any]:
    """The view of `state` as of `at`."""
    now = state.as_of(at)
    return {
        "account_id": now.account_id,
        "user_id": now.user_id,
        "version": now.version,
        "status": now.status,
        "closure_reason": now.closure_reason,
        "tier_id": now.tier.tier_id,
        "starting_balance": format_cents(now.starting_balance_cents),
        "equity": format_cents(now.current_balance_cents),
        "balance": format_cents(now.balance_cents),
        "peak_balance": format_cents(now.peak_balance_cents),
        "realized_pnl": format_cents(now.realized_pnl_cents),
        "unrealized_pnl": format_cents(now.unrealized_pnl_cents),
        "withdrawable_amount": format_cents(now.withdrawable_cents),
        "positions": [p.to_wire() for p in now.positions.values()],
        "rules": {rule: reading.to_wire() for rule, reading in now.readings().items()},
        "trading_day": now.day_wire().get("trading_day"),
        "updated_at": format_ts(now.updated_at),
        "as_of": format_ts(at),
    }
