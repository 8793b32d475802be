"""The withdrawal policy (CONTRACT section 5) as small named checks.

Each check returns a `Refusal` naming the broken rule, or None. A request is checked in the
contract's order and the first refusal is the answer; the codes are the HTTP error codes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.daybook import day_gates
from domain.events import RequestWithdrawal
from domain.money import format_cents
from domain.rulepacks import GateResult
from domain.state import AccountState
from domain.withdrawals import REVIEW_FROM_CENTS, Withdrawal

__all__ = [
    "AUTO_APPROVE_BELOW_CENTS",
    "MIN_WITHDRAWAL_CENTS",
    "REQUEST_CHECKS",
    "SUPPORTED_PAYMENT_METHODS",
    "Code",
    "Refusal",
    "approval_refusal",
    "eligibility",
    "pack_gates",
    "request_refusal",
    "valid_destination",
]

MIN_WITHDRAWAL_CENTS = 100_00
AUTO_APPROVE_BELOW_CENTS = REVIEW_FROM_CENTS
SUPPORTED_PAYMENT_METHODS: frozenset[str] = frozenset({"stripe_connect"})
# A Stripe Connect account id: `acct_` and alphanumerics.
_DESTINATION_RE = re.compile(r"acct_[A-Za-z0-9]{1,250}")


class Code(StrEnum):
    """Refusal and rejection codes; the string values are the wire codes."""

    ACCOUNT_NOT_ACTIVE = "account_not_active"
    OPEN_POSITIONS = "open_positions"
    MIN_TRADES_NOT_MET = "min_trades_not_met"
    BELOW_MINIMUM = "below_minimum"
    EXCEEDS_WITHDRAWABLE = "exceeds_withdrawable"
    UNSUPPORTED_PAYMENT_METHOD = "unsupported_payment_method"
    INVALID_DESTINATION = "invalid_destination"
    NOT_PENDING = "not_pending"
    UNKNOWN_WITHDRAWAL = "unknown_withdrawal"
    UNKNOWN_ACCOUNT = "unknown_account"
    ACCOUNT_CLOSED = "account_closed"
    TRANSFER_REVERSED = "transfer_reversed"


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    # The failing gate (`gate`, `passed`, `value`, `required`, `message`) of a payout gate.
    details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # Keep a plain str (not the enum member) so stored and published forms are plain.
        object.__setattr__(self, "code", str(self.code))


def valid_destination(destination: str) -> bool:
    return _DESTINATION_RE.fullmatch(destination) is not None


def account_not_active(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    if state.is_active:
        return None
    return Refusal(Code.ACCOUNT_NOT_ACTIVE, f"the account is {state.status}")


def open_positions(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    if not state.positions:
        return None
    return Refusal(
        Code.OPEN_POSITIONS, f"close all positions first ({len(state.positions)} still open)"
    )


def min_trades_not_met(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    needed = state.tier.min_trades
    if state.closed_positions_count >= needed:
        return None
    return Refusal(
        Code.MIN_TRADES_NOT_MET,
        f"{state.closed_positions_count} closed trades of the {needed} required",
    )


def below_minimum(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    if request.amount_cents >= MIN_WITHDRAWAL_CENTS:
        return None
    return Refusal(
        Code.BELOW_MINIMUM,
        f"the minimum withdrawal is {format_cents(MIN_WITHDRAWAL_CENTS)}",
    )


def exceeds_withdrawable(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    available = state.withdrawable_cents
    if request.amount_cents <= available:
        return None
    return Refusal(
        Code.EXCEEDS_WITHDRAWABLE,
        f"{format_cents(request.amount_cents)} exceeds the withdrawable {format_cents(available)}",
    )


def unsupported_payment_method(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    if request.payment_method in SUPPORTED_PAYMENT_METHODS:
        return None
    return Refusal(
        Code.UNSUPPORTED_PAYMENT_METHOD,
        f"supported payment methods: {', '.join(sorted(SUPPORTED_PAYMENT_METHODS))}",
    )


def invalid_destination(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    if valid_destination(request.destination):
        return None
    return Refusal(
        Code.INVALID_DESTINATION, "destination must be a Stripe connected account id (acct_...)"
    )


RequestCheck = Callable[[AccountState, RequestWithdrawal], Refusal | None]
# The contract's order: the first one that fails is the answer.
REQUEST_CHECKS: tuple[RequestCheck, ...] = (
    account_not_active,
    open_positions,
    min_trades_not_met,
    below_minimum,
    exceeds_withdrawable,
    unsupported_payment_method,
    invalid_destination,
)


def pack_gates(state: AccountState, at: datetime) -> list[GateResult]:
    """The payout gates of the account's rule pack (CONTRACT section 4a) for a request at
    `at`, in order; none for a legacy tier."""
    terms = state.tier.terms
    book = state.book
    if terms is None or book is None:
        return []
    return day_gates(
        book,
        terms,
        realized_pnl_cents=state.realized_pnl_cents,
        activated_at=state.activated_at,
        requested_at=at,
    )


def _gate_refusal(result: GateResult) -> Refusal:
    return Refusal(result.code, result.message, details=result.to_wire())


def request_refusal(state: AccountState, request: RequestWithdrawal) -> Refusal | None:
    """The first check of section 5 that fails, then the first payout gate of the pack."""
    for check in REQUEST_CHECKS:
        refusal = check(state, request)
        if refusal is not None:
            return refusal
    for result in pack_gates(state, request.requested_at):
        if not result.passed:
            return _gate_refusal(result)
    return None


def _gate(gate: str, passed: bool, value: str, required: str, message: str) -> dict[str, Any]:
    return {
        "gate": gate,
        "passed": passed,
        "value": value,
        "required": required,
        "message": message,
    }


def eligibility(state: AccountState, at: datetime) -> dict[str, Any]:
    """`GET /funded-accounts/{id}/payout-eligibility` at `at`: every gate of sections 5 and 4a
    in order, whether a request could pass them all now, and the largest amount it could ask.

    The gates of section 5 that depend on the account (not on what a request says): active,
    no open positions, `min_trades`, and a withdrawable amount of at least the minimum."""
    withdrawable = state.withdrawable_cents
    minimum = format_cents(MIN_WITHDRAWAL_CENTS)
    open_count = len(state.positions)
    closed = state.closed_positions_count
    gates = [
        _gate(
            "account_active",
            state.is_active,
            state.status,
            "active",
            f"the account is {state.status}",
        ),
        _gate(
            "no_open_positions",
            open_count == 0,
            str(open_count),
            "0",
            "no open positions" if open_count == 0 else f"{open_count} position(s) still open",
        ),
        _gate(
            "min_trades",
            closed >= state.tier.min_trades,
            str(closed),
            str(state.tier.min_trades),
            f"{closed} closed trades, at least {state.tier.min_trades} required",
        ),
        _gate(
            "min_withdrawal",
            withdrawable >= MIN_WITHDRAWAL_CENTS,
            format_cents(withdrawable),
            f"at least {minimum}",
            f"withdrawable {format_cents(withdrawable)}, the minimum withdrawal is {minimum}",
        ),
    ]
    gates.extend(result.to_wire() for result in pack_gates(state, at))
    eligible = all(gate["passed"] for gate in gates)
    return {
        "eligible": eligible,
        "max_amount": format_cents(withdrawable if eligible else 0),
        "gates": gates,
    }


def approval_refusal(state: AccountState, withdrawal: Withdrawal) -> Refusal | None:
    """The re-check at approval: still active, and the amount still covered by the share once
    its own reservation is set aside."""
    if not state.is_active:
        return Refusal(Code.ACCOUNT_NOT_ACTIVE, f"the account is {state.status}")
    others_reserved = state.reserved_cents - withdrawal.amount_cents
    covered = state.trader_share_cents - state.total_withdrawals_cents - others_reserved
    if withdrawal.amount_cents <= covered:
        return None
    return Refusal(
        Code.EXCEEDS_WITHDRAWABLE,
        f"{format_cents(withdrawal.amount_cents)} exceeds the withdrawable "
        f"{format_cents(max(0, covered))}",
    )
