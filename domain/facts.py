"""Facts FundedFlow publishes (CONTRACT section 6), as JSON-ready dicts.

A fact's `event_id` is derived from what caused it (the cause's event id, the fact type and
what it is about), and its `occurred_at` is the cause's time, never the clock: handling the
same cause again produces byte-identical facts, so consumers can drop repeats.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from domain.money import format_cents
from domain.rulepacks import Reading
from domain.timestamps import format_ts
from domain.withdrawals import Withdrawal

__all__ = [
    "ACCOUNT_ACTIVATED",
    "ACCOUNT_CLOSED",
    "ACCOUNT_CREATED",
    "ACCOUNT_LOCKED",
    "ACCOUNT_UNLOCKED",
    "FACT_TYPES",
    "RULE_STATUS_CHANGED",
    "VIOLATION_DETECTED",
    "WITHDRAWAL_APPROVED",
    "WITHDRAWAL_COMPLETED",
    "WITHDRAWAL_FAILED",
    "WITHDRAWAL_REJECTED",
    "WITHDRAWAL_REQUESTED",
    "WITHDRAWAL_REVERSED",
    "FactLog",
    "fact_event_id",
]

ACCOUNT_CREATED = "funded-account.created"
ACCOUNT_ACTIVATED = "funded-account.activated"
ACCOUNT_CLOSED = "funded-account.closed"
ACCOUNT_LOCKED = "funded-account.locked"
ACCOUNT_UNLOCKED = "funded-account.unlocked"
VIOLATION_DETECTED = "rules.violation-detected"
RULE_STATUS_CHANGED = "rules.status-changed"
WITHDRAWAL_REQUESTED = "withdrawal.requested"
WITHDRAWAL_APPROVED = "withdrawal.approved"
WITHDRAWAL_COMPLETED = "withdrawal.completed"
WITHDRAWAL_REJECTED = "withdrawal.rejected"
WITHDRAWAL_FAILED = "withdrawal.failed"
WITHDRAWAL_REVERSED = "withdrawal.reversed"
FACT_TYPES: tuple[str, ...] = (
    ACCOUNT_CREATED,
    ACCOUNT_ACTIVATED,
    ACCOUNT_CLOSED,
    ACCOUNT_LOCKED,
    ACCOUNT_UNLOCKED,
    VIOLATION_DETECTED,
    RULE_STATUS_CHANGED,
    WITHDRAWAL_REQUESTED,
    WITHDRAWAL_APPROVED,
    WITHDRAWAL_COMPLETED,
    WITHDRAWAL_REJECTED,
    WITHDRAWAL_FAILED,
    WITHDRAWAL_REVERSED,
)

FACT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fundedflow.invalid/fact")


def fact_event_id(cause_event_id: str, fact_type: str, subject: str) -> str:
    """Stable id of the `fact_type` fact about `subject` caused by `cause_event_id`."""
    return str(uuid.uuid5(FACT_NAMESPACE, f"{cause_event_id}/{fact_type}/{subject}"))


class FactLog:
    """Collects, in order, the facts one input causes for one account."""

    def __init__(
        self, cause_event_id: str, occurred_at: datetime, account_id: str, user_id: str
    ) -> None:
        self.cause_event_id = cause_event_id
        self.occurred_at = occurred_at
        self.account_id = account_id
        self.user_id = user_id
        self.facts: list[dict[str, Any]] = []

    def _emit(self, fact_type: str, subject: str, extra: dict[str, Any]) -> None:
        self.facts.append(
            {
                "event_id": fact_event_id(self.cause_event_id, fact_type, subject),
                "type": fact_type,
                "occurred_at": format_ts(self.occurred_at),
                "account_id": self.account_id,
                "user_id": self.user_id,
                **extra,
            }
        )

    # funded-account.*

    def account_created(
        self, assessment_id: str, tier_id: str, starting_balance_cents: int
    ) -> None:
        self._emit(
            ACCOUNT_CREATED,
            self.account_id,
            {
                "assessment_id": assessment_id,
                "tier_id": tier_id,
                "starting_balance": format_cents(starting_balance_cents),
            },
        )

    def account_activated(self, activated_at: datetime) -> None:
        self._emit(ACCOUNT_ACTIVATED, self.account_id, {"activated_at": format_ts(activated_at)})

    def account_closed(self, reason: str, closed_at: datetime, current_balance_cents: int) -> None:
        self._emit(
            ACCOUNT_CLOSED,
            self.account_id,
            {
                "reason": reason,
                "closed_at": format_ts(closed_at),
                "current_balance": format_cents(current_balance_cents),
            },
        )

    def account_locked(self, rule: str, until: datetime) -> None:
        """A daily loss that locks: no new position until `until` (the next reset)."""
        subject = f"{rule}/{format_ts(until)}"
        self._emit(ACCOUNT_LOCKED, subject, {"rule": rule, "until": format_ts(until)})

    def account_unlocked(self, rule: str, until: datetime) -> None:
        """The lock that ran until `until` ended (the first input or read of the next day)."""
        self._emit(ACCOUNT_UNLOCKED, f"{rule}/{format_ts(until)}", {"rule": rule})

    # rules.*

    def violation_detected(
        self,
        rule: str,
        reading: Reading,
        trigger_event_id: str,
        action: str,
        evidence: dict[str, Any],
    ) -> None:
        self._emit(
            VIOLATION_DETECTED,
            rule,
            {
                "rule": rule,
                **_reading_figures(reading),
                "trigger_event_id": trigger_event_id,
                "action": action,
                "evidence": evidence,
            },
        )

    def rule_status_changed(self, rule: str, reading: Reading, previous_status: str) -> None:
        self._emit(
            RULE_STATUS_CHANGED,
            rule,
            {
                "rule": rule,
                "previous_status": previous_status,
                "status": reading.status,
                **_reading_figures(reading),
            },
        )

    # withdrawal.*

    def withdrawal_requested(self, withdrawal: Withdrawal) -> None:
        self._emit(
            WITHDRAWAL_REQUESTED,
            withdrawal.withdrawal_id,
            {
                "withdrawal_id": withdrawal.withdrawal_id,
                "amount": format_cents(withdrawal.amount_cents),
                "requires_review": withdrawal.requires_review,
            },
        )

    def withdrawal_approved(self, withdrawal: Withdrawal) -> None:
        self._emit(
            WITHDRAWAL_APPROVED,
            withdrawal.withdrawal_id,
            {
                "withdrawal_id": withdrawal.withdrawal_id,
                "amount": format_cents(withdrawal.amount_cents),
                "approved_by": withdrawal.approved_by,
            },
        )

    def withdrawal_completed(self, withdrawal: Withdrawal) -> None:
        self._emit(
            WITHDRAWAL_COMPLETED,
            withdrawal.withdrawal_id,
            {
                "withdrawal_id": withdrawal.withdrawal_id,
                "amount": format_cents(withdrawal.amount_cents),
                "stripe_payout_id": withdrawal.stripe_payout_id,
            },
        )

    def withdrawal_rejected(self, withdrawal: Withdrawal, rejected_by: str) -> None:
        self._emit(
            WITHDRAWAL_REJECTED,
            withdrawal.withdrawal_id,
            {
                "withdrawal_id": withdrawal.withdrawal_id,
                "reason": withdrawal.rejection_reason,
                "rejected_by": rejected_by,
            },
        )

    def withdrawal_failed(self, withdrawal: Withdrawal) -> None:
        self._emit(
            WITHDRAWAL_FAILED,
            withdrawal.withdrawal_id,
            {"withdrawal_id": withdrawal.withdrawal_id, "reason": withdrawal.rejection_reason},
        )

    def withdrawal_reversed(self, withdrawal: Withdrawal, newly_reversed_cents: int) -> None:
        self._emit(
            WITHDRAWAL_REVERSED,
            f"{withdrawal.withdrawal_id}/{withdrawal.reversed_cents}",
            {
                "withdrawal_id": withdrawal.withdrawal_id,
                "amount": format_cents(newly_reversed_cents),
                "reversed_total": format_cents(withdrawal.reversed_cents),
            },
        )


def _reading_figures(reading: Reading) -> dict[str, Any]:
    """`value`, `threshold`, `remaining`, `floor` of a reading (CONTRACT section 4a)."""
    wire = reading.to_wire()
    return {key: wire[key] for key in ("value", "threshold", "remaining", "floor")}
