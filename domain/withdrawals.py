"""A withdrawal and its state machine (CONTRACT section 5).

    pending ──approve──► approved ──payout ok──► completed ──transfer reversed──► failed
       │                    └──────payout refused─────────────────────────────► failed
       └──reject / re-check fails / account closed──► rejected

Nothing else is legal: `transition` refuses any other move with `IllegalTransition`, so a
rejected withdrawal can never be paid and a paid one never paid twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.money import format_cents
from domain.timestamps import format_ts, format_ts_or_none, parse_ts, parse_ts_or_none

__all__ = [
    "APPROVED",
    "AUTO_APPROVED_BY",
    "COMPLETED",
    "FAILED",
    "IN_FLIGHT",
    "PENDING",
    "REJECTED",
    "STATUSES",
    "SYSTEM_ACTOR",
    "TRANSITIONS",
    "IllegalTransition",
    "Withdrawal",
    "from_row",
    "transition",
]

PENDING = "pending"
APPROVED = "approved"
COMPLETED = "completed"
REJECTED = "rejected"
FAILED = "failed"
STATUSES: tuple[str, ...] = (PENDING, APPROVED, COMPLETED, REJECTED, FAILED)
# Reserved against the trader's share until they complete, fail or are rejected.
IN_FLIGHT: frozenset[str] = frozenset({PENDING, APPROVED})

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({APPROVED, REJECTED}),
    APPROVED: frozenset({COMPLETED, FAILED}),
    COMPLETED: frozenset({FAILED}),  # a reversed transfer
    REJECTED: frozenset(),
    FAILED: frozenset(),
}

AUTO_APPROVED_BY = "auto"
# Requests of this amount or more wait for an admin (CONTRACT section 5; domain/policy.py).
REVIEW_FROM_CENTS = 1_000_00
SYSTEM_ACTOR = "system"

# Estimates shown to the trader (`estimated_completion_at`): a Stripe Connect transfer lands
# within a day of approval; a withdrawal waiting for review should be paid within three days
# of the request.
PAYOUT_ESTIMATE = timedelta(days=1)
REVIEW_ESTIMATE = timedelta(days=3)


class IllegalTransition(ValueError):
    def __init__(self, withdrawal_id: str, current: str, target: str) -> None:
        self.reason = f"withdrawal {withdrawal_id} cannot go from {current} to {target}"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Withdrawal:
    withdrawal_id: str
    user_id: str
    amount_cents: int
    status: str
    requires_review: bool
    payment_method: str
    destination: str
    requested_at: datetime
    approved_at: datetime | None = None
    approved_by: str | None = None
    completed_at: datetime | None = None
    # Set when rejected, and when failed (payout refused or transfer reversed): the contract's
    # withdrawal object has no separate failure time.
    rejected_at: datetime | None = None
    rejection_reason: str | None = None
    stripe_payout_id: str | None = None
    # Cents of the transfer Stripe reversed so far (cumulative, CONTRACT section 5): a partly
    # reversed withdrawal stays `completed`; a fully reversed one is `failed`.
    reversed_cents: int = 0
    # A `transfer.reversed` that came before the payout result (the withdrawal still
    # `approved`): (transfer id, cumulative reversed cents), applied once the transfer is known.
    held_reversal: tuple[str, int] | None = None

    @property
    def estimated_completion_at(self) -> datetime | None:
        """When the money should arrive: the completion itself once completed; a day after
        approval while the transfer is in flight; three days after the request while pending;
        nothing for a withdrawal that will not complete."""
        if self.status == COMPLETED:
            return self.completed_at
        if self.status == APPROVED:
            return (self.approved_at or self.requested_at) + PAYOUT_ESTIMATE
        if self.status == PENDING:
            return self.requested_at + REVIEW_ESTIMATE
        return None

    def to_wire(self, account_id: str) -> dict[str, Any]:
        """The withdrawal object of CONTRACT section 7."""
        return {
            "id": self.withdrawal_id,
            "account_id": account_id,
            "amount": format_cents(self.amount_cents),
            "status": self.status,
            "requires_review": self.requires_review,
            "requested_at": format_ts(self.requested_at),
            "approved_at": format_ts_or_none(self.approved_at),
            "approved_by": self.approved_by,
            "completed_at": format_ts_or_none(self.completed_at),
            "rejected_at": format_ts_or_none(self.rejected_at),
            "rejection_reason": self.rejection_reason,
            "stripe_payout_id": self.stripe_payout_id,
            "estimated_completion_at": format_ts_or_none(self.estimated_completion_at),
            "reversed_total": format_cents(self.reversed_cents),
        }

    def to_dict(self) -> dict[str, Any]:
        """Lossless JSON-safe form for stored state (cents as integers)."""
        return {
            "withdrawal_id": self.withdrawal_id,
            "user_id": self.user_id,
            "amount_cents": self.amount_cents,
            "status": self.status,
            "requires_review": self.requires_review,
            "payment_method": self.payment_method,
            "destination": self.destination,
            "requested_at": format_ts(self.requested_at),
            "approved_at": format_ts_or_none(self.approved_at),
            "approved_by": self.approved_by,
            "completed_at": format_ts_or_none(self.completed_at),
            "rejected_at": format_ts_or_none(self.rejected_at),
            "rejection_reason": self.rejection_reason,
            "stripe_payout_id": self.stripe_payout_id,
            "reversed_cents": self.reversed_cents,
            "held_reversal": None if self.held_reversal is None else list(self.held_reversal),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Withdrawal:
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown withdrawal status {status!r}")
        return cls(
            withdrawal_id=str(data["withdrawal_id"]),
            user_id=str(data["user_id"]),
            amount_cents=_int(data["amount_cents"]),
            status=status,
            requires_review=bool(data["requires_review"]),
            payment_method=str(data["payment_method"]),
            destination=str(data["destination"]),
            requested_at=parse_ts(data["requested_at"]),
            approved_at=parse_ts_or_none(data.get("approved_at")),
            approved_by=data.get("approved_by"),
            completed_at=parse_ts_or_none(data.get("completed_at")),
            rejected_at=parse_ts_or_none(data.get("rejected_at")),
            rejection_reason=data.get("rejection_reason"),
            stripe_payout_id=data.get("stripe_payout_id"),
            reversed_cents=_int(data.get("reversed_cents", 0)),
            held_reversal=_held(data.get("held_reversal")),
        )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected integer cents, got {value!r}")
    return value


def from_row(row: Mapping[str, Any]) -> Withdrawal:
    """A withdrawal as the `withdrawals` table of PostgreSQL has it (for the history that left
    the account's value). The row keeps no payment method or destination (not part of the
    withdrawal object); `requires_review` follows from the amount, as it did at the request."""
    amount = _row_cents(row["amount"])
    return Withdrawal(
        withdrawal_id=str(row["id"]),
        user_id=str(row["user_id"]),
        amount_cents=amount,
        status=str(row["status"]),
        requires_review=amount >= REVIEW_FROM_CENTS,
        payment_method="",
        destination="",
        requested_at=row["requested_at"],
        approved_at=row.get("approved_at"),
        approved_by=row.get("approved_by"),
        completed_at=row.get("completed_at"),
        rejected_at=row.get("rejected_at"),
        rejection_reason=row.get("rejection_reason"),
        stripe_payout_id=row.get("stripe_payout_id"),
        reversed_cents=_row_cents(row.get("reversed_total") or 0),
    )


def _row_cents(value: Any) -> int:
    cents = Decimal(value) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"not a whole number of cents: {value!r}")
    return int(cents)


def _held(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    transfer_id, cents = value
    return (str(transfer_id), _int(cents))


def transition(withdrawal: Withdrawal, target: str, **changes: Any) -> Withdrawal:
    """`withdrawal` moved to `target` with `changes`; any move the machine lacks is refused."""
    if target not in TRANSITIONS[withdrawal.status]:
        raise IllegalTransition(withdrawal.withdrawal_id, withdrawal.status, target)
    return replace(withdrawal, status=target, **changes)


def archive_entry(account_id: str, w: Withdrawal) -> dict[str, Any]:
    """The archive's value for a settled withdrawal: the withdrawal and its account (a
    withdrawal id does not always name its account: ids from the command stream are free)."""
    return {**w.to_dict(), "account_id": account_id}


def read_archive_entry(value: dict[str, Any]) -> tuple[str | None, Withdrawal]:
    """The account (None in entries written before it was kept) and the withdrawal."""
    owner = value.get("account_id")
    return (owner if isinstance(owner, str) else None), Withdrawal.from_dict(value)
