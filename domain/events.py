"""What reaches an account: upstream events (CONTRACT section 3) and internal commands.

Parsers turn a JSON object (already decoded with `parse_float=Decimal`) into a frozen value or
raise `InvalidEvent` with a reason fit for a dead-letter record. Commands are produced by our
own HTTP layer and payout agent; they carry a `type` and round-trip through `to_wire` /
`parse_command`. Unknown extra fields are ignored, so producers can add fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from domain.fields import FieldReader
from domain.money import format_cents, format_decimal
from domain.tiers import InvalidTier, Tier, parse_tier
from domain.timestamps import format_ts, parse_ts
from domain.validation import MAX_TEXT_LENGTH

__all__ = [
    "ActivateAccount",
    "ApproveWithdrawal",
    "AssessmentCompleted",
    "Command",
    "InvalidEvent",
    "Message",
    "PayoutFailed",
    "PayoutSucceeded",
    "PositionClosed",
    "PositionOpened",
    "PositionUpdated",
    "RejectWithdrawal",
    "RequestWithdrawal",
    "ReverseTransfer",
    "TradeEvent",
    "account_id_for",
    "activation_for",
    "format_ts",
    "parse_assessment",
    "parse_command",
    "parse_message",
    "parse_trade",
    "parse_ts",
]

# Fixed namespaces: ids derived from them must never change between releases.
ACCOUNT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fundedflow.invalid/funded-account")
ACTIVATION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://fundedflow.invalid/activation")

MAX_REASON_LENGTH = MAX_TEXT_LENGTH
# Stripe's error messages can be long; a payout failure keeps up to this much of one.
MAX_PAYOUT_REASON_LENGTH = 2000

Side = Literal["long", "short"]
AssessmentStatus = Literal["passed", "failed"]
_SIDES: tuple[Side, ...] = ("long", "short")
_ASSESSMENT_STATUSES: tuple[AssessmentStatus, ...] = ("passed", "failed")


class InvalidEvent(ValueError):
    """An input that cannot be parsed or validated; `reason` is `code: detail`."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


def _reader(obj: object) -> FieldReader:
    if not isinstance(obj, Mapping):
        raise InvalidEvent("invalid_event", "the value must be a JSON object")
    return FieldReader(obj, InvalidEvent)


def account_id_for(assessment_id: str) -> str:
    """The funded account id of an assessment: the same on every redelivery."""
    return "fa_" + uuid.uuid5(ACCOUNT_NAMESPACE, assessment_id).hex


# --- assessment.completed -------------------------------------------------------------------


@dataclass(frozen=True)
class AssessmentCompleted:
    event_id: str
    assessment_id: str
    user_id: str
    tier_id: str
    status: AssessmentStatus
    completed_at: datetime | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "assessment_id": self.assessment_id,
            "user_id": self.user_id,
            "tier_id": self.tier_id,
            "status": self.status,
            "completed_at": format_ts(self.completed_at) if self.completed_at else None,
        }


def parse_assessment(obj: object) -> AssessmentCompleted:
    fields = _reader(obj)
    return AssessmentCompleted(
        event_id=fields.string("event_id"),
        assessment_id=fields.string("assessment_id"),
        user_id=fields.string("user_id"),
        tier_id=fields.string("tier_id"),
        status=fields.choice("status", _ASSESSMENT_STATUSES),
        completed_at=fields.optional_timestamp("completed_at"),
    )


def activation_for(assessment: AssessmentCompleted, tier: Tier) -> ActivateAccount | None:
    """The activation an assessment asks for, or None (failed, or passed without completed_at).

    Everything is derived from the assessment, never from the clock or its delivery: the
    command's `event_id` comes from `assessment_id` and `activated_at` is `completed_at`, so a
    redelivered (even re-published) assessment yields the identical command and facts.
    """
    if assessment.status != "passed" or assessment.completed_at is None:
        return None
    return ActivateAccount(
        event_id="act-" + uuid.uuid5(ACTIVATION_NAMESPACE, assessment.assessment_id).hex,
        account_id=account_id_for(assessment.assessment_id),
        user_id=assessment.user_id,
        assessment_id=assessment.assessment_id,
        tier=tier,
        activated_at=assessment.completed_at,
    )


# --- trades -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionOpened:
    event_id: str
    account_id: str
    position_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    notional_cents: int
    occurred_at: datetime
    # The event as received (parsed JSON), for a breach's evidence; not part of its identity.
    received: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": "position_opened",
            "account_id": self.account_id,
            "position_id": self.position_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": format_decimal(self.quantity),
            "price": format_decimal(self.price),
            "notional": format_cents(self.notional_cents),
            "occurred_at": format_ts(self.occurred_at),
        }


@dataclass(frozen=True)
class PositionUpdated:
    event_id: str
    account_id: str
    position_id: str
    unrealized_pnl_cents: int
    notional_cents: int | None
    occurred_at: datetime
    # The event as received (parsed JSON), for a breach's evidence; not part of its identity.
    received: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "event_id": self.event_id,
            "type": "position_updated",
            "account_id": self.account_id,
            "position_id": self.position_id,
            "unrealized_pnl": format_cents(self.unrealized_pnl_cents),
            "occurred_at": format_ts(self.occurred_at),
        }
        if self.notional_cents is not None:
            wire["notional"] = format_cents(self.notional_cents)
        return wire


@dataclass(frozen=True)
class PositionClosed:
    event_id: str
    account_id: str
    position_id: str
    realized_pnl_cents: int
    occurred_at: datetime
    # The event as received (parsed JSON), for a breach's evidence; not part of its identity.
    received: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": "position_closed",
            "account_id": self.account_id,
            "position_id": self.position_id,
            "realized_pnl": format_cents(self.realized_pnl_cents),
            "occurred_at": format_ts(self.occurred_at),
        }


TradeEvent = PositionOpened | PositionUpdated | PositionClosed


def _notional(fields: FieldReader) -> int:
    cents = fields.money("notional")
    if cents < 0:
        fields.fail("invalid_field", "notional must not be negative")
    return cents


def _parse_opened(fields: FieldReader) -> PositionOpened:
    return PositionOpened(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        position_id=fields.string("position_id"),
        symbol=fields.string("symbol", max_length=64),
        side=fields.choice("side", _SIDES),
        quantity=fields.quantity("quantity"),
        price=fields.price("price"),
        notional_cents=_notional(fields),
        occurred_at=fields.timestamp("occurred_at"),
        received=fields.source,
    )


def _parse_updated(fields: FieldReader) -> PositionUpdated:
    return PositionUpdated(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        position_id=fields.string("position_id"),
        unrealized_pnl_cents=fields.money("unrealized_pnl"),
        notional_cents=_notional(fields) if fields.has("notional") else None,
        occurred_at=fields.timestamp("occurred_at"),
        received=fields.source,
    )


def _parse_closed(fields: FieldReader) -> PositionClosed:
    return PositionClosed(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        position_id=fields.string("position_id"),
        realized_pnl_cents=fields.money("realized_pnl"),
        occurred_at=fields.timestamp("occurred_at"),
        received=fields.source,
    )


_TRADE_PARSERS: dict[str, Callable[[FieldReader], TradeEvent]] = {
    "position_opened": _parse_opened,
    "position_updated": _parse_updated,
    "position_closed": _parse_closed,
}


def parse_trade(obj: object) -> TradeEvent:
    fields = _reader(obj)
    kind = fields.raw("type")
    parser = _TRADE_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        fields.fail("unknown_type", f"type must be one of {', '.join(_TRADE_PARSERS)}")
    return parser(fields)


# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivateAccount:
    event_id: str
    account_id: str
    user_id: str
    assessment_id: str
    tier: Tier
    activated_at: datetime

    TYPE: ClassVar[str] = "activate_account"

    @property
    def occurred_at(self) -> datetime:
        return self.activated_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "user_id": self.user_id,
            "assessment_id": self.assessment_id,
            "tier": self.tier.to_wire(),
            "activated_at": format_ts(self.activated_at),
        }


@dataclass(frozen=True)
class RequestWithdrawal:
    """A trader's request. `payment_method` and `destination` are any strings here: whether
    they are supported is a business refusal (`unsupported_payment_method`,
    `invalid_destination`), not a parse error. `amount_cents` may be below the minimum for the
    same reason."""

    event_id: str
    account_id: str
    user_id: str
    withdrawal_id: str
    amount_cents: int
    payment_method: str
    destination: str
    requested_at: datetime

    TYPE: ClassVar[str] = "request_withdrawal"

    @property
    def occurred_at(self) -> datetime:
        return self.requested_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "user_id": self.user_id,
            "withdrawal_id": self.withdrawal_id,
            "amount": format_cents(self.amount_cents),
            "payment_method": self.payment_method,
            "destination": self.destination,
            "requested_at": format_ts(self.requested_at),
        }


@dataclass(frozen=True)
class ApproveWithdrawal:
    event_id: str
    account_id: str
    withdrawal_id: str
    admin_id: str
    at: datetime

    TYPE: ClassVar[str] = "approve_withdrawal"

    @property
    def occurred_at(self) -> datetime:
        return self.at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "withdrawal_id": self.withdrawal_id,
            "admin_id": self.admin_id,
            "at": format_ts(self.at),
        }


@dataclass(frozen=True)
class RejectWithdrawal:
    event_id: str
    account_id: str
    withdrawal_id: str
    admin_id: str
    reason: str
    at: datetime

    TYPE: ClassVar[str] = "reject_withdrawal"

    @property
    def occurred_at(self) -> datetime:
        return self.at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "withdrawal_id": self.withdrawal_id,
            "admin_id": self.admin_id,
            "reason": self.reason,
            "at": format_ts(self.at),
        }


@dataclass(frozen=True)
class PayoutSucceeded:
    event_id: str
    account_id: str
    withdrawal_id: str
    stripe_transfer_id: str
    at: datetime

    TYPE: ClassVar[str] = "payout_succeeded"

    @property
    def occurred_at(self) -> datetime:
        return self.at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "withdrawal_id": self.withdrawal_id,
            "stripe_transfer_id": self.stripe_transfer_id,
            "at": format_ts(self.at),
        }


@dataclass(frozen=True)
class PayoutFailed:
    event_id: str
    account_id: str
    withdrawal_id: str
    reason: str
    at: datetime

    TYPE: ClassVar[str] = "payout_failed"

    @property
    def occurred_at(self) -> datetime:
        return self.at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "withdrawal_id": self.withdrawal_id,
            "reason": self.reason,
            "at": format_ts(self.at),
        }


@dataclass(frozen=True)
class ReverseTransfer:
    """Stripe's `transfer.reversed`: `amount_reversed_cents` is the transfer's cumulative
    `amount_reversed` (Stripe sends the event for partial reversals too)."""

    event_id: str
    account_id: str
    withdrawal_id: str
    stripe_transfer_id: str
    amount_reversed_cents: int
    at: datetime

    TYPE: ClassVar[str] = "reverse_transfer"

    @property
    def occurred_at(self) -> datetime:
        return self.at

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "event_id": self.event_id,
            "account_id": self.account_id,
            "withdrawal_id": self.withdrawal_id,
            "stripe_transfer_id": self.stripe_transfer_id,
            "amount_reversed": format_cents(self.amount_reversed_cents),
            "at": format_ts(self.at),
        }


Command = (
    ActivateAccount
    | RequestWithdrawal
    | ApproveWithdrawal
    | RejectWithdrawal
    | PayoutSucceeded
    | PayoutFailed
    | ReverseTransfer
)
Message = Command | TradeEvent


def _parse_activate(fields: FieldReader) -> ActivateAccount:
    event_id = fields.string("event_id")
    account_id = fields.string("account_id")
    user_id = fields.string("user_id")
    assessment_id = fields.string("assessment_id")
    try:
        tier = parse_tier(fields.mapping("tier"))
    except InvalidTier as exc:
        fields.fail("invalid_field", f"tier: {exc.reason}")
    return ActivateAccount(
        event_id=event_id,
        account_id=account_id,
        user_id=user_id,
        assessment_id=assessment_id,
        tier=tier,
        activated_at=fields.timestamp("activated_at"),
    )


def _parse_request(fields: FieldReader) -> RequestWithdrawal:
    return RequestWithdrawal(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        user_id=fields.string("user_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        amount_cents=fields.money("amount"),
        payment_method=_any_string(fields, "payment_method"),
        destination=_any_string(fields, "destination"),
        requested_at=fields.timestamp("requested_at"),
    )


def _any_string(fields: FieldReader, name: str) -> str:
    # The same check as the HTTP view's (domain/validation.py): what it lets through parses.
    return fields.text(name, max_length=MAX_REASON_LENGTH)


def _parse_approve(fields: FieldReader) -> ApproveWithdrawal:
    return ApproveWithdrawal(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        admin_id=fields.string("admin_id"),
        at=fields.timestamp("at"),
    )


def _parse_reject(fields: FieldReader) -> RejectWithdrawal:
    return RejectWithdrawal(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        admin_id=fields.string("admin_id"),
        # Stripped as the HTTP view strips it: "kyc " is the reason "kyc" in both places.
        reason=fields.reason("reason", max_length=MAX_REASON_LENGTH),
        at=fields.timestamp("at"),
    )


def _parse_payout_succeeded(fields: FieldReader) -> PayoutSucceeded:
    return PayoutSucceeded(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        stripe_transfer_id=fields.string("stripe_transfer_id"),
        at=fields.timestamp("at"),
    )


def _parse_payout_failed(fields: FieldReader) -> PayoutFailed:
    return PayoutFailed(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        reason=fields.string("reason", max_length=MAX_PAYOUT_REASON_LENGTH),
        at=fields.timestamp("at"),
    )


def _parse_reverse(fields: FieldReader) -> ReverseTransfer:
    cmd = ReverseTransfer(
        event_id=fields.string("event_id"),
        account_id=fields.string("account_id"),
        withdrawal_id=fields.string("withdrawal_id"),
        stripe_transfer_id=fields.string("stripe_transfer_id"),
        amount_reversed_cents=fields.money("amount_reversed"),
        at=fields.timestamp("at"),
    )
    if cmd.amount_reversed_cents <= 0:
        fields.fail("invalid_field", "amount_reversed must be positive")
    return cmd


_COMMAND_PARSERS: dict[str, Callable[[FieldReader], Command]] = {
    ActivateAccount.TYPE: _parse_activate,
    RequestWithdrawal.TYPE: _parse_request,
    ApproveWithdrawal.TYPE: _parse_approve,
    RejectWithdrawal.TYPE: _parse_reject,
    PayoutSucceeded.TYPE: _parse_payout_succeeded,
    PayoutFailed.TYPE: _parse_payout_failed,
    ReverseTransfer.TYPE: _parse_reverse,
}


def parse_command(obj: object) -> Command:
    fields = _reader(obj)
    kind = fields.raw("type")
    parser = _COMMAND_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        fields.fail("unknown_type", f"type must be one of {', '.join(_COMMAND_PARSERS)}")
    return parser(fields)


def parse_message(obj: object) -> Message:
    """A trade event or a command, told apart by `type` (for an agent reading both topics)."""
    fields = _reader(obj)
    kind = fields.raw("type")
    if isinstance(kind, str) and kind in _TRADE_PARSERS:
        return _TRADE_PARSERS[kind](fields)
    return parse_command(obj)
