"""Builders of the events and commands the stream tests publish."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.events import (
    ApproveWithdrawal,
    RejectWithdrawal,
    RequestWithdrawal,
    account_id_for,
)

_clock = itertools.count()
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def ts() -> str:
    return (T0 + timedelta(seconds=next(_clock))).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assessment(
    asm: str,
    user: str = "usr_1",
    tier: str = "funded-100k",
    status: str = "passed",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("e"),
        "assessment_id": asm,
        "user_id": user,
        "tier_id": tier,
        "status": status,
        "completed_at": ts(),
    }


def account_of(asm: str) -> str:
    return account_id_for(asm)


def opened(acct: str, pos: str, notional: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("t"),
        "type": "position_opened",
        "account_id": acct,
        "position_id": pos,
        "symbol": "EURUSD",
        "side": "long",
        "quantity": "2.5",
        "price": "1.0850",
        "notional": notional,
        "occurred_at": ts(),
    }


def updated(
    acct: str, pos: str, pnl: str, notional: str | None = None, event_id: str | None = None
) -> dict[str, Any]:
    e = {
        "event_id": event_id or uid("t"),
        "type": "position_updated",
        "account_id": acct,
        "position_id": pos,
        "unrealized_pnl": pnl,
        "occurred_at": ts(),
    }
    if notional is not None:
        e["notional"] = notional
    return e


def closed(acct: str, pos: str, pnl: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or uid("t"),
        "type": "position_closed",
        "account_id": acct,
        "position_id": pos,
        "realized_pnl": pnl,
        "occurred_at": ts(),
    }


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def request(
    acct: str,
    wid: str,
    amount_cents: int,
    user: str = "usr_1",
    destination: str = "acct_1Test",
    at: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return RequestWithdrawal(
        event_id=event_id or f"req:{wid}",
        account_id=acct,
        user_id=user,
        withdrawal_id=wid,
        amount_cents=amount_cents,
        payment_method="stripe_connect",
        destination=destination,
        requested_at=at or now(),
    ).to_wire()


def approve(
    acct: str, wid: str, admin: str = "adm_1", at: datetime | None = None
) -> dict[str, Any]:
    return ApproveWithdrawal(
        event_id=f"approve:{wid}",
        account_id=acct,
        withdrawal_id=wid,
        admin_id=admin,
        at=at or now(),
    ).to_wire()


def reject(
    acct: str,
    wid: str,
    reason: str = "not today",
    admin: str = "adm_1",
    at: datetime | None = None,
) -> dict[str, Any]:
    return RejectWithdrawal(
        event_id=f"reject:{wid}",
        account_id=acct,
        withdrawal_id=wid,
        admin_id=admin,
        reason=reason,
        at=at or now(),
    ).to_wire()
