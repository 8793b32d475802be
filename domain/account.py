"""The single entry point that changes a funded account: `handle(state, message)`.

`handle` is pure and deterministic: it reads no clock and does no I/O. Given the account's
state (or None) and one input — a trade event or a command — it returns the new state, the
facts to publish in the order they happened, a reply for the withdrawal commands that someone
waits on, or the reason to dead-letter the input.

Every input is checked completely before anything is changed, so a refusal, a dead letter or a
duplicate leaves the given state exactly as it was. Applied inputs are remembered by event id
in a bounded window stored with the state, which makes redelivery harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.events import (
    ActivateAccount,
    ApproveWithdrawal,
    Command,
    PayoutFailed,
    PayoutSucceeded,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RejectWithdrawal,
    RequestWithdrawal,
    ReverseTransfer,
    TradeEvent,
)
from domain.facts import FactLog
from domain.policy import (
    AUTO_APPROVE_BELOW_CENTS,
    Code,
    Refusal,
    approval_refusal,
    request_refusal,
)
from domain.rules import RULES, VIOLATION, RuleReading
from domain.state import ACTIVE, CLOSED, AccountState, Position
from domain.withdrawals import (
    APPROVED,
    AUTO_APPROVED_BY,
    COMPLETED,
    FAILED,
    PENDING,
    REJECTED,
    SYSTEM_ACTOR,
    Withdrawal,
    transition,
)

__all__ = [
    "ACCOUNT_CLOSED",
    "DEFAULT_DEDUPE_WINDOW",
    "DUPLICATE_POSITION",
    "ILLEGAL_TRANSITION",
    "INVALID_EVENT",
    "TRANSFER_MISMATCH",
    "UNKNOWN_ACCOUNT",
    "UNKNOWN_POSITION",
    "UNKNOWN_WITHDRAWAL",
    "AccountState",
    "Outcome",
    "Position",
    "Reply",
    "RuleReading",
    "Withdrawal",
    "handle",
    "payout_due",
]

DEFAULT_DEDUPE_WINDOW = 10_000

# Dead-letter reasons: inputs that make no sense for the account.
UNKNOWN_ACCOUNT = "unknown_account"
UNKNOWN_POSITION = "unknown_position"
DUPLICATE_POSITION = "duplicate_position"
ACCOUNT_CLOSED = "account_closed"
INVALID_EVENT = "invalid_event"
UNKNOWN_WITHDRAWAL = "unknown_withdrawal"
ILLEGAL_TRANSITION = "illegal_transition"
TRANSFER_MISMATCH = "transfer_mismatch"


@dataclass(frozen=True)
class Reply:
    """The answer to a withdrawal command: the withdrawal object, or a refusal code."""

    accepted: bool
    withdrawal: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def accept(cls, withdrawal: Withdrawal, account_id: str) -> Reply:
        return cls(accepted=True, withdrawal=withdrawal.to_wire(account_id))

    @classmethod
    def refuse(cls, refusal: Refusal) -> Reply:
        return cls(accepted=False, code=refusal.code, message=refusal.message)

    def to_wire(self) -> dict[str, Any]:
        """`{"withdrawal": {...}}` or the contract's error body."""
        if self.accepted:
            return {"withdrawal": self.withdrawal}
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Outcome:
    state: AccountState | None
    facts: list[dict[str, Any]] = field(default_factory=list)
    reply: Reply | None = None
    # Why the input goes to the dead-letter topic (one of the reasons above), with a detail.
    dead_letter: str | None = None
    detail: str | None = None
    duplicate: bool = False
    # True when the input was applied: the state changed and must be stored.
    changed: bool = False


_INPUTS = (
    ActivateAccount,
    RequestWithdrawal,
    ApproveWithdrawal,
    RejectWithdrawal,
    PayoutSucceeded,
    PayoutFailed,
    ReverseTransfer,
    PositionOpened,
    PositionUpdated,
    PositionClosed,
)


def payout_due(state: AccountState) -> list[Withdrawal]:
    """Approved withdrawals still waiting for their transfer, oldest request first."""
    return [w for w in state.withdrawals.values() if w.status == APPROVED]


def handle(
    state: AccountState | None,
    message: Command | TradeEvent,
    *,
    dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
) -> Outcome:
    """Apply one input to one account (see the module docstring)."""
    if dedupe_window < 1:
        raise ValueError("dedupe_window must be at least 1")
    if not isinstance(message, _INPUTS):
        return Outcome(state, dead_letter=INVALID_EVENT, detail=f"unsupported input {message!r}")
    if isinstance(message, ActivateAccount):
        return _activate(state, message, dedupe_window)
    if state is None:
        return _unknown_account(message)
    if message.account_id != state.account_id:
        return Outcome(
            state,
            dead_letter=INVALID_EVENT,
            detail=f"account_id {message.account_id} does not match {state.account_id}",
        )
    if state.has_applied(message.event_id):
        return _duplicate(state, message)
    if isinstance(message, PositionOpened | PositionUpdated | PositionClosed):
        return _trade(state, message, dedupe_window)
    if isinstance(message, RequestWithdrawal):
        return _request(state, message, dedupe_window)
    if isinstance(message, ApproveWithdrawal):
        return _approve(state, message, dedupe_window)
    if isinstance(message, RejectWithdrawal):
        return _reject(state, message, dedupe_window)
    if isinstance(message, PayoutSucceeded):
        return _payout_succeeded(state, message, dedupe_window)
    if isinstance(message, PayoutFailed):
        return _payout_failed(state, message, dedupe_window)
    return _reverse(state, message, dedupe_window)


# --- shared steps ------------------------------------------------------------------------------


def _log(state: AccountState, message: Command | TradeEvent) -> FactLog:
    return FactLog(message.event_id, message.occurred_at, state.account_id, state.user_id)


def _commit(
    state: AccountState,
    message: Command | TradeEvent,
    window: int,
    log: FactLog,
    reply: Reply | None = None,
) -> Outcome:
    """Record an applied input: remember its id, bump the version, move `updated_at` on."""
    state.remember(message.event_id, window)
    state.version += 1
    # Inputs may carry times slightly out of order; updated_at never goes back.
    state.updated_at = max(state.updated_at, message.occurred_at)
    return Outcome(state, facts=log.facts, reply=reply, changed=True)


def _withdrawal_reply(state: AccountState, withdrawal_id: str) -> Reply | None:
    withdrawal = state.withdrawals.get(withdrawal_id)
    return None if withdrawal is None else Reply.accept(withdrawal, state.account_id)


def _duplicate(state: AccountState, message: Command | TradeEvent) -> Outcome:
    reply = None
    refused = state.refusals.get(message.event_id)
    if refused is not None:
        reply = Reply(accepted=False, code=refused[0], message=refused[1])
    elif isinstance(message, RequestWithdrawal | ApproveWithdrawal | RejectWithdrawal):
        # Whoever waits on a redelivered command gets the withdrawal as it stands now.
        reply = _withdrawal_reply(state, message.withdrawal_id)
    return Outcome(state, reply=reply, duplicate=True)


def _unknown_account(message: Command | TradeEvent) -> Outcome:
    reply = None
    if isinstance(message, RequestWithdrawal | ApproveWithdrawal | RejectWithdrawal):
        reply = Reply.refuse(Refusal(Code.UNKNOWN_ACCOUNT, "no such funded account"))
    return Outcome(
        None, reply=reply, dead_letter=UNKNOWN_ACCOUNT, detail=f"account {message.account_id}"
    )


# --- activation --------------------------------------------------------------------------------


def _activate(state: AccountState | None, cmd: ActivateAccount, window: int) -> Outcome:
    if state is not None:
        # One assessment, one account: a redelivered activation changes nothing.
        return Outcome(state, duplicate=True)
    start = cmd.tier.starting_balance_cents
    account = AccountState(
        account_id=cmd.account_id,
        user_id=cmd.user_id,
        assessment_id=cmd.assessment_id,
        tier=cmd.tier,
        status=ACTIVE,
        activated_at=cmd.activated_at,
        starting_balance_cents=start,
        peak_balance_cents=start,
        updated_at=cmd.activated_at,
    )
    log = _log(account, cmd)
    log.account_created(cmd.assessment_id, cmd.tier.tier_id, start)
    log.account_activated(cmd.activated_at)
    return _commit(account, cmd, window, log)


# --- trades ------------------------------------------------------------------------------------


def _trade(state: AccountState, event: TradeEvent, window: int) -> Outcome:
    position = state.positions.get(event.position_id)
    if isinstance(event, PositionOpened):
        if not state.is_active:
            return Outcome(state, dead_letter=ACCOUNT_CLOSED, detail="the account is closed")
        if position is not None:
            return Outcome(
                state,
                dead_letter=DUPLICATE_POSITION,
                detail=f"position {event.position_id} is already open",
            )
        state.positions[event.position_id] = Position(
            position_id=event.position_id,
            symbol=event.symbol,
            side=event.side,
            quantity=event.quantity,
            price=event.price,
            notional_cents=event.notional_cents,
            unrealized_pnl_cents=0,
            opened_at=event.occurred_at,
        )
    elif position is None:
        return Outcome(
            state,
            dead_letter=UNKNOWN_POSITION,
            detail=f"position {event.position_id} is not open",
        )
    elif isinstance(event, PositionUpdated):
        notional = position.notional_cents if event.notional_cents is None else event.notional_cents
        state.positions[event.position_id] = Position(
            position_id=position.position_id,
            symbol=position.symbol,
            side=position.side,
            quantity=position.quantity,
            price=position.price,
            notional_cents=notional,
            unrealized_pnl_cents=event.unrealized_pnl_cents,
            opened_at=position.opened_at,
        )
    else:
        del state.positions[event.position_id]
        state.realized_pnl_cents += event.realized_pnl_cents
        state.closed_positions_count += 1

    state.peak_balance_cents = max(state.peak_balance_cents, state.current_balance_cents)
    log = _log(state, event)
    if state.is_active:
        # A closed account is being liquidated: its balances move, its rules are over.
        _check_rules(state, event, log)
    return _commit(state, event, window, log)


def _check_rules(state: AccountState, event: TradeEvent, log: FactLog) -> None:
    readings = state.rules()
    broken: list[str] = []
    for rule in RULES:
        reading = readings[rule]
        previous = state.rule_status[rule]
        if reading.status != previous:
            log.rule_status_changed(reading, previous)
            state.rule_status[rule] = reading.status
        if reading.status == VIOLATION:
            log.violation_detected(reading, trigger_event_id=event.event_id)
            broken.append(rule)
    if broken:
        _close(state, f"rule_violation:{broken[0]}", event, log)


def _close(state: AccountState, reason: str, event: TradeEvent, log: FactLog) -> None:
    state.status = CLOSED
    state.closed_at = event.occurred_at
    state.closure_reason = reason
    log.account_closed(reason, event.occurred_at, state.current_balance_cents)
    # Pending withdrawals die with the account; approved ones are already with the payout
    # and are left to finish.
    for withdrawal_id, withdrawal in list(state.withdrawals.items()):
        if withdrawal.status == PENDING:
            rejected = transition(
                withdrawal,
                REJECTED,
                rejected_at=event.occurred_at,
                rejection_reason=str(Code.ACCOUNT_CLOSED),
            )
            state.withdrawals[withdrawal_id] = rejected
            log.withdrawal_rejected(rejected, SYSTEM_ACTOR)


# --- withdrawal decisions ----------------------------------------------------------------------


def _request(state: AccountState, cmd: RequestWithdrawal, window: int) -> Outcome:
    if cmd.user_id != state.user_id:
        # Said the way the HTTP API says it: no hint that another user's account exists.
        return Outcome(
            state, reply=Reply.refuse(Refusal(Code.UNKNOWN_ACCOUNT, "no such funded account"))
        )
    if cmd.withdrawal_id in state.withdrawals:
        # The same request under a new event id (e.g. a client retry): answer it again.
        return _duplicate(state, cmd)
    refusal = request_refusal(state, cmd)
    if refusal is not None:
        # Nothing of the account changes, but the answer is kept: read again after a crash,
        # the same request gets the same refusal (see `_duplicate`).
        state.remember_refusal(cmd.event_id, refusal.code, refusal.message, window)
        state.version += 1
        return Outcome(state, reply=Reply.refuse(refusal), changed=True)

    withdrawal = Withdrawal(
        withdrawal_id=cmd.withdrawal_id,
        user_id=cmd.user_id,
        amount_cents=cmd.amount_cents,
        status=PENDING,
        requires_review=cmd.amount_cents >= AUTO_APPROVE_BELOW_CENTS,
        payment_method=cmd.payment_method,
        destination=cmd.destination,
        requested_at=cmd.requested_at,
    )
    log = _log(state, cmd)
    log.withdrawal_requested(withdrawal)
    if not withdrawal.requires_review:
        withdrawal = transition(
            withdrawal, APPROVED, approved_at=cmd.requested_at, approved_by=AUTO_APPROVED_BY
        )
        log.withdrawal_approved(withdrawal)
    state.withdrawals[withdrawal.withdrawal_id] = withdrawal
    return _commit(state, cmd, window, log, Reply.accept(withdrawal, state.account_id))


def _pending(state: AccountState, withdrawal_id: str) -> Withdrawal | Refusal:
    withdrawal = state.withdrawals.get(withdrawal_id)
    if withdrawal is None:
        return Refusal(Code.UNKNOWN_WITHDRAWAL, f"no withdrawal {withdrawal_id} on this account")
    if withdrawal.status != PENDING:
        return Refusal(Code.NOT_PENDING, f"the withdrawal is {withdrawal.status}")
    return withdrawal


def _approve(state: AccountState, cmd: ApproveWithdrawal, window: int) -> Outcome:
    found = _pending(state, cmd.withdrawal_id)
    if isinstance(found, Refusal):
        return Outcome(state, reply=Reply.refuse(found))
    log = _log(state, cmd)
    refusal = approval_refusal(state, found)
    if refusal is None:
        decided = transition(found, APPROVED, approved_at=cmd.at, approved_by=cmd.admin_id)
        log.withdrawal_approved(decided)
    else:
        decided = transition(found, REJECTED, rejected_at=cmd.at, rejection_reason=refusal.code)
        log.withdrawal_rejected(decided, cmd.admin_id)
    state.withdrawals[decided.withdrawal_id] = decided
    return _commit(state, cmd, window, log, Reply.accept(decided, state.account_id))


def _reject(state: AccountState, cmd: RejectWithdrawal, window: int) -> Outcome:
    found = _pending(state, cmd.withdrawal_id)
    if isinstance(found, Refusal):
        return Outcome(state, reply=Reply.refuse(found))
    rejected = transition(found, REJECTED, rejected_at=cmd.at, rejection_reason=cmd.reason)
    state.withdrawals[rejected.withdrawal_id] = rejected
    log = _log(state, cmd)
    log.withdrawal_rejected(rejected, cmd.admin_id)
    return _commit(state, cmd, window, log, Reply.accept(rejected, state.account_id))


# --- payout results ----------------------------------------------------------------------------


def _known(state: AccountState, withdrawal_id: str) -> Withdrawal | Outcome:
    withdrawal = state.withdrawals.get(withdrawal_id)
    if withdrawal is None:
        return Outcome(
            state, dead_letter=UNKNOWN_WITHDRAWAL, detail=f"no withdrawal {withdrawal_id}"
        )
    return withdrawal


def _not_from(state: AccountState, withdrawal: Withdrawal, event: str) -> Outcome:
    return Outcome(
        state,
        dead_letter=ILLEGAL_TRANSITION,
        detail=f"{event} for withdrawal {withdrawal.withdrawal_id} in status {withdrawal.status}",
    )


def _payout_succeeded(state: AccountState, cmd: PayoutSucceeded, window: int) -> Outcome:
    found = _known(state, cmd.withdrawal_id)
    if isinstance(found, Outcome):
        return found
    if found.status != APPROVED:
        if found.stripe_payout_id == cmd.stripe_transfer_id:
            # Already recorded (completed, perhaps reversed since): a repeat of the same result.
            return Outcome(state, duplicate=True)
        return _not_from(state, found, "payout_succeeded")
    completed = transition(
        found, COMPLETED, completed_at=cmd.at, stripe_payout_id=cmd.stripe_transfer_id
    )
    state.withdrawals[completed.withdrawal_id] = completed
    state.total_withdrawals_cents += completed.amount_cents
    log = _log(state, cmd)
    log.withdrawal_completed(completed)
    return _commit(state, cmd, window, log)


def _payout_failed(state: AccountState, cmd: PayoutFailed, window: int) -> Outcome:
    found = _known(state, cmd.withdrawal_id)
    if isinstance(found, Outcome):
        return found
    if found.status != APPROVED:
        if found.status == FAILED and found.stripe_payout_id is None:
            return Outcome(state, duplicate=True)
        return _not_from(state, found, "payout_failed")
    failed = transition(found, FAILED, rejected_at=cmd.at, rejection_reason=cmd.reason)
    state.withdrawals[failed.withdrawal_id] = failed
    log = _log(state, cmd)
    log.withdrawal_failed(failed)
    return _commit(state, cmd, window, log)


def _reverse(state: AccountState, cmd: ReverseTransfer, window: int) -> Outcome:
    found = _known(state, cmd.withdrawal_id)
    if isinstance(found, Outcome):
        return found
    if found.stripe_payout_id is not None and found.stripe_payout_id != cmd.stripe_transfer_id:
        return Outcome(
            state,
            dead_letter=TRANSFER_MISMATCH,
            detail=f"withdrawal {found.withdrawal_id} was paid by {found.stripe_payout_id}",
        )
    if found.status != COMPLETED:
        if found.status == FAILED and found.rejection_reason == Code.TRANSFER_REVERSED:
            return Outcome(state, duplicate=True)
        return _not_from(state, found, "reverse_transfer")
    reversed_ = transition(
        found, FAILED, rejected_at=cmd.at, rejection_reason=str(Code.TRANSFER_REVERSED)
    )
    state.withdrawals[reversed_.withdrawal_id] = reversed_
    # The money came back: it no longer counts as paid, so the share covers it again.
    state.total_withdrawals_cents -= reversed_.amount_cents
    log = _log(state, cmd)
    log.withdrawal_failed(reversed_)
    return _commit(state, cmd, window, log)
