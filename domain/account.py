"""The single entry point that changes a funded account: `handle(state, message)`.

`handle` is pure and deterministic: it reads no clock and does no I/O. Given the account's
state (or None) and one input — a trade event or a command — it returns the new state, the
facts to publish in the order they happened, a reply for the withdrawal commands that someone
waits on, or the reason to dead-letter the input.

Every input is checked completely before anything is changed, so a refusal, a dead letter or a
duplicate leaves the given state exactly as it was.

What the core needs from outside the account's own value comes in as arguments, looked up by
the caller (`step` does it through a `Memory`): `seen`, what the applied-ids memory holds for
the input's event id (a producer's redelivery at a new offset), and `archived`, a settled
withdrawal that has left the value (a late reversal). What must go there comes back in the
`Outcome`: `remember` (the input's entry for the applied-ids memory) and `archive` (settled
withdrawals, to keep once they leave the value). The value itself stays bounded
(domain/state.py: positions, open and recent withdrawals, the last RECENT_IDS input ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from domain.daybook import open_book, roll
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
from domain.money import format_ratio
from domain.policy import (
    AUTO_APPROVE_BELOW_CENTS,
    Code,
    Refusal,
    approval_refusal,
    request_refusal,
)
from domain.rulepacks import (
    ACTION_CLOSE,
    ACTION_LOCK,
    DAILY_LOSS,
    MAX_LOSS,
    Floor,
    Reading,
    daily_loss_floor,
    drawdown_floor,
    evidence_state,
    formula_line,
    make_evidence,
    max_loss_floor,
    risk_formula,
)
from domain.rules import DRAWDOWN, SAFE, VIOLATION
from domain.state import (
    ACTIVE,
    CLOSED,
    MAX_OPEN_POSITIONS,
    MAX_OPEN_WITHDRAWALS,
    AccountState,
    Position,
)
from domain.timestamps import format_ts
from domain.tradingdays import DayClock
from domain.withdrawals import (
    APPROVED,
    AUTO_APPROVED_BY,
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    PENDING,
    REJECTED,
    SYSTEM_ACTOR,
    Withdrawal,
    transition,
)

__all__ = [
    "ACCOUNT_CLOSED",
    "DAILY_LOSS_LOCKED",
    "DUPLICATE_POSITION",
    "ILLEGAL_TRANSITION",
    "INVALID_EVENT",
    "TOO_MANY_POSITIONS",
    "TRANSFER_MISMATCH",
    "UNKNOWN_ACCOUNT",
    "UNKNOWN_POSITION",
    "UNKNOWN_WITHDRAWAL",
    "AccountState",
    "DictMemory",
    "Memory",
    "Outcome",
    "Position",
    "Reading",
    "Remembered",
    "Reply",
    "Withdrawal",
    "handle",
    "payout_due",
    "step",
]

# Dead-letter reasons: inputs that make no sense for the account.
UNKNOWN_ACCOUNT = "unknown_account"
UNKNOWN_POSITION = "unknown_position"
DUPLICATE_POSITION = "duplicate_position"
ACCOUNT_CLOSED = "account_closed"
INVALID_EVENT = "invalid_event"
UNKNOWN_WITHDRAWAL = "unknown_withdrawal"
ILLEGAL_TRANSITION = "illegal_transition"
TRANSFER_MISMATCH = "transfer_mismatch"
TOO_MANY_POSITIONS = "too_many_positions"
# A daily loss that locks refuses new positions until the next reset (CONTRACT section 4a).
DAILY_LOSS_LOCKED = "daily_loss_locked"

# Refusal codes of commands that are not business rules (views map them to HTTP statuses).
KEY_REUSED = "idempotency_key_reused"
TOO_MANY_OPEN_WITHDRAWALS = "too_many_open_withdrawals"


@dataclass(frozen=True)
class Remembered:
    """The applied-ids memory's entry for one input: that it was applied, and for a refused
    request its answer; `terms` is what the request asked (a repeat under the same id that
    asks something else is another request: `idempotency_key_reused`)."""

    refusal: tuple[str, str] | None = None
    terms: str | None = None
    # A refused request's `details` (the failing payout gate), answered again on a repeat.
    details: dict[str, Any] | None = None
    # The account's version the input made. An entry can outlive its value when a crash
    # keeps one table's changelog record and loses the other's: an entry newer than the
    # value, or one the value's recent ids contradict, names an input that is not applied.
    version: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {}
        if self.version is not None:
            wire["v"] = self.version
        if self.refusal is not None:
            wire["r"] = list(self.refusal)
        if self.terms is not None:
            wire["t"] = self.terms
        if self.details is not None:
            wire["d"] = self.details
        return wire

    @classmethod
    def from_wire(cls, data: Any) -> Remembered:
        if not isinstance(data, dict):
            return cls()
        refusal = data.get("r")
        terms = data.get("t")
        version = data.get("v")
        details = data.get("d")
        return cls(
            refusal=(str(refusal[0]), str(refusal[1])) if isinstance(refusal, list) else None,
            terms=terms if isinstance(terms, str) else None,
            version=version if isinstance(version, int) else None,
            details=details if isinstance(details, dict) else None,
        )

    def holds_for(self, state: AccountState, event_id: str) -> bool:
        """Whether the entry belongs to the history `state` is the end of (see `version`)."""
        if self.version is None:
            return True  # moved out of an old-format value: applied in that value's history
        if self.version > state.version:
            return False
        oldest = state.version - len(state.recent_ids) + 1
        if self.version >= oldest:
            return state.recent_ids[self.version - oldest][0] == event_id
        return True


@dataclass(frozen=True)
class Reply:
    """The answer to a withdrawal command: the withdrawal object, or a refusal code."""

    accepted: bool
    withdrawal: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    details: dict[str, Any] | None = None

    @classmethod
    def accept(cls, withdrawal: Withdrawal, account_id: str) -> Reply:
        return cls(accepted=True, withdrawal=withdrawal.to_wire(account_id))

    @classmethod
    def refuse(cls, refusal: Refusal) -> Reply:
        return cls(
            accepted=False, code=refusal.code, message=refusal.message, details=refusal.details
        )

    def to_wire(self) -> dict[str, Any]:
        """`{"withdrawal": {...}}` or the contract's error body (with `details` when a payout
        gate refused it)."""
        if self.accepted:
            return {"withdrawal": self.withdrawal}
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


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
    # For the applied-ids memory, under the input's event id (set when `changed`).
    remember: Remembered | None = None
    # Settled withdrawals that changed or left the value: the archive keeps their last form.
    archive: list[Withdrawal] = field(default_factory=list)


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


# --- what the core needs from outside the value ------------------------------------------------


class Memory(Protocol):
    """The caller's applied-ids memory and withdrawal archive, for `step`."""

    def seen(self, account_id: str, event_id: str) -> Remembered | None: ...

    def archived(self, account_id: str, withdrawal_id: str) -> Withdrawal | None: ...


@dataclass
class DictMemory:
    """A `Memory` in plain dicts (the tests' replay; the agent keeps the same in tables)."""

    ids: dict[tuple[str, str], Remembered] = field(default_factory=dict)
    withdrawals: dict[tuple[str, str], Withdrawal] = field(default_factory=dict)

    def seen(self, account_id: str, event_id: str) -> Remembered | None:
        return self.ids.get((account_id, event_id))

    def archived(self, account_id: str, withdrawal_id: str) -> Withdrawal | None:
        return self.withdrawals.get((account_id, withdrawal_id))

    def settled(self, account_id: str) -> dict[str, Withdrawal]:
        """The account's archived withdrawals, by withdrawal id."""
        return {wid: w for (acct, wid), w in self.withdrawals.items() if acct == account_id}

    def record(self, message: Command | TradeEvent, outcome: Outcome) -> None:
        if outcome.changed and outcome.remember is not None:
            self.ids[(message.account_id, message.event_id)] = outcome.remember
        for w in outcome.archive:
            self.withdrawals[(message.account_id, w.withdrawal_id)] = w


def step(state: AccountState | None, message: Command | TradeEvent, memory: Memory) -> Outcome:
    """`handle` with its outside look-ups done through `memory` (one of each at most)."""
    if not isinstance(message, _INPUTS):
        return handle(state, message)
    seen = None
    if state is not None and not isinstance(message, ActivateAccount):
        seen = memory.seen(message.account_id, message.event_id)
    archived = None
    withdrawal_id = getattr(message, "withdrawal_id", None)
    if state is not None and isinstance(withdrawal_id, str):
        if withdrawal_id not in state.withdrawals:
            archived = memory.archived(message.account_id, withdrawal_id)
    return handle(state, message, seen=seen, archived=archived)


def handle(
    state: AccountState | None,
    message: Command | TradeEvent,
    *,
    seen: Remembered | None = None,
    archived: Withdrawal | None = None,
) -> Outcome:
    """Apply one input to one account (see the module docstring)."""
    if not isinstance(message, _INPUTS):
        return Outcome(state, dead_letter=INVALID_EVENT, detail=f"unsupported input {message!r}")
    if isinstance(message, ActivateAccount):
        return _activate(state, message)
    if state is None:
        return _unknown_account(message)
    if message.account_id != state.account_id:
        return Outcome(
            state,
            dead_letter=INVALID_EVENT,
            detail=f"account_id {message.account_id} does not match {state.account_id}",
        )
    if archived is not None and (
        archived.withdrawal_id in state.withdrawals
        or getattr(message, "withdrawal_id", None) != archived.withdrawal_id
    ):
        archived = None  # the value's own copy is the newer one
    if seen is not None and not seen.holds_for(state, message.event_id):
        seen = None  # its value write was lost: the input was never applied, apply it now
    if seen is None:
        recent = state.recent(message.event_id)
        if recent is not None:
            # The memory lost its entry (a crash between two changelog writes): the value's
            # own recent ids still know the input, though not its whole answer.
            code = recent[1]
            seen = Remembered(refusal=None if code is None else (code, "refused before"))
    if seen is not None:
        return _duplicate(state, message, seen, archived)
    if isinstance(message, PositionOpened | PositionUpdated | PositionClosed):
        return _trade(state, message)
    if isinstance(message, RequestWithdrawal):
        return _request(state, message, archived)
    if isinstance(message, ApproveWithdrawal):
        return _approve(state, message, archived)
    if isinstance(message, RejectWithdrawal):
        return _reject(state, message, archived)
    if isinstance(message, PayoutSucceeded):
        return _payout_succeeded(state, message)
    if isinstance(message, PayoutFailed):
        return _payout_failed(state, message)
    return _reverse(state, message, archived)


# --- shared steps ------------------------------------------------------------------------------


def _log(state: AccountState, message: Command | TradeEvent) -> FactLog:
    return FactLog(message.event_id, message.occurred_at, state.account_id, state.user_id)


def _terms(message: Command | TradeEvent) -> str | None:
    """What a request asks, for telling a repeat from another request under the same id."""
    if isinstance(message, RequestWithdrawal):
        return f"{message.amount_cents}|{message.payment_method}|{message.destination}"
    if isinstance(message, RejectWithdrawal):
        return message.reason
    return None


def _commit(
    state: AccountState,
    message: Command | TradeEvent,
    log: FactLog,
    reply: Reply | None = None,
) -> Outcome:
    """Record an applied input: remember its id, bump the version, move `updated_at` on, and
    move settled withdrawals past RECENT_SETTLED out to the archive."""
    state.remember(message.event_id)
    state.version += 1
    # Inputs may carry times slightly out of order; updated_at never goes back.
    state.updated_at = max(state.updated_at, message.occurred_at)
    archive: dict[str, Withdrawal] = {}
    for fact in log.facts:
        w = state.withdrawals.get(fact.get("withdrawal_id", ""))
        if w is not None and w.status not in IN_FLIGHT:
            archive[w.withdrawal_id] = w
    for w in state.settle_out():
        archive[w.withdrawal_id] = w
    return Outcome(
        state,
        facts=log.facts,
        reply=reply,
        changed=True,
        remember=Remembered(terms=_terms(message), version=state.version),
        archive=list(archive.values()),
    )


def _withdrawal_reply(
    state: AccountState, withdrawal_id: str, archived: Withdrawal | None = None
) -> Reply | None:
    withdrawal = state.withdrawals.get(withdrawal_id) or archived
    return None if withdrawal is None else Reply.accept(withdrawal, state.account_id)


def _key_reused() -> Reply:
    return Reply.refuse(Refusal(KEY_REUSED, "this Idempotency-Key was used with another request"))


def _duplicate(
    state: AccountState,
    message: Command | TradeEvent,
    seen: Remembered,
    archived: Withdrawal | None,
) -> Outcome:
    reply = None
    terms = _terms(message)
    if seen.terms is not None and terms is not None and seen.terms != terms:
        # The same id (derived from the same Idempotency-Key) asking for something else.
        reply = _key_reused()
    elif seen.refusal is not None:
        reply = Reply(
            accepted=False, code=seen.refusal[0], message=seen.refusal[1], details=seen.details
        )
    elif isinstance(message, RequestWithdrawal | ApproveWithdrawal | RejectWithdrawal):
        # Whoever waits on a redelivered command gets the withdrawal as it stands now.
        reply = _withdrawal_reply(state, message.withdrawal_id, archived)
    return Outcome(state, reply=reply, duplicate=True)


def _unknown_account(message: Command | TradeEvent) -> Outcome:
    reply = None
    if isinstance(message, RequestWithdrawal | ApproveWithdrawal | RejectWithdrawal):
        reply = Reply.refuse(Refusal(Code.UNKNOWN_ACCOUNT, "no such funded account"))
    return Outcome(
        None, reply=reply, dead_letter=UNKNOWN_ACCOUNT, detail=f"account {message.account_id}"
    )


# --- activation --------------------------------------------------------------------------------


def _activate(state: AccountState | None, cmd: ActivateAccount) -> Outcome:
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
    terms = cmd.tier.terms
    if terms is not None:
        account.book = open_book(terms, cmd.activated_at)
        account.rule_status = dict.fromkeys(terms.rule_names, SAFE)
    log = _log(account, cmd)
    log.account_created(cmd.assessment_id, cmd.tier.tier_id, start)
    log.account_activated(cmd.activated_at)
    return _commit(account, cmd, log)


# --- trades ------------------------------------------------------------------------------------


def _trade(state: AccountState, event: TradeEvent) -> Outcome:
    position = state.positions.get(event.position_id)
    book = state.book
    if isinstance(event, PositionOpened):
        if not state.is_active:
            return Outcome(state, dead_letter=ACCOUNT_CLOSED, detail="the account is closed")
        if position is not None:
            return Outcome(
                state,
                dead_letter=DUPLICATE_POSITION,
                detail=f"position {event.position_id} is already open",
            )
        if len(state.positions) >= MAX_OPEN_POSITIONS:
            return Outcome(
                state,
                dead_letter=TOO_MANY_POSITIONS,
                detail=f"an account holds at most {MAX_OPEN_POSITIONS} open positions",
            )
        if book is not None and book.locked_until is not None and event.occurred_at < book.day_end:
            return Outcome(
                state,
                dead_letter=DAILY_LOSS_LOCKED,
                detail=f"no new position until {format_ts(book.locked_until)}",
            )
    elif position is None:
        return Outcome(
            state,
            dead_letter=UNKNOWN_POSITION,
            detail=f"position {event.position_id} is not open",
        )

    log = _log(state, event)
    if state.is_active:
        _roll(state, event.occurred_at, log)
    # The figures just before the event (on the event's day): a breach's evidence.
    before = _Figures(state.current_balance_cents, state.balance_cents, state.peak_balance_cents)
    if isinstance(event, PositionOpened):
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
    elif isinstance(event, PositionUpdated):
        assert position is not None
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
    if book is not None and not isinstance(event, PositionUpdated):
        book.day_traded = True

    state.peak_balance_cents = max(state.peak_balance_cents, state.current_balance_cents)
    if state.is_active:
        # A closed account is being liquidated: its balances move, its rules are over.
        _check_rules(state, event, log, before)
    return _commit(state, event, log)


def _roll(state: AccountState, at: Any, log: FactLog) -> None:
    """A rule-pack account moves to the day of `at` before an input of a later day is applied
    (domain.daybook.roll); a lock that ran until the reset ends with it."""
    terms = state.tier.terms
    book = state.book
    if terms is None or book is None or at < book.day_end:
        return
    until = book.locked_until
    if roll(
        book,
        terms,
        at,
        realized_pnl_cents=state.realized_pnl_cents,
        equity_cents=state.current_balance_cents,
    ):
        assert until is not None
        log.account_unlocked(DAILY_LOSS, until)


@dataclass(frozen=True)
class _Figures:
    equity_cents: int
    balance_cents: int
    peak_balance_cents: int


def _check_rules(state: AccountState, event: TradeEvent, log: FactLog, before: _Figures) -> None:
    statuses = state.rule_statuses()
    rule_status = state.rule_status
    if all(
        status == rule_status[rule] and status != VIOLATION for rule, status in statuses.items()
    ):
        return  # the common case: no band moved, nothing broken
    readings = state.readings()
    closing: list[str] = []
    locking: list[str] = []
    for rule in state.rule_names:
        reading = readings[rule]
        previous = rule_status[rule]
        if reading.status != previous:
            log.rule_status_changed(rule, reading, previous)
            rule_status[rule] = reading.status
        if reading.status != VIOLATION:
            continue
        action = _action(state, rule)
        if action == ACTION_LOCK:
            book = state.book
            assert book is not None
            if book.daily_breached:
                continue  # a locked day's later losses cannot breach it twice
            book.daily_breached = True
            locking.append(rule)
        else:
            closing.append(rule)
        evidence = _evidence(state, rule, reading, event, before)
        log.violation_detected(rule, reading, event.event_id, action, evidence)
    if closing:
        _close(state, f"rule_violation:{closing[0]}", event, log)
    elif locking:
        book = state.book
        assert book is not None
        book.locked_until = book.day_end
        log.account_locked(locking[0], book.day_end)


def _action(state: AccountState, rule: str) -> str:
    terms = state.tier.terms
    return ACTION_CLOSE if terms is None else terms.action(rule)


def _json_safe(value: Any) -> Any:
    """A received JSON value with its exact decimals as strings (the codec reads a number with
    a fraction as a Decimal; the published fact writes it as a string)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _rule_terms(state: AccountState, rule: str) -> dict[str, Any]:
    tier = state.tier
    pack = tier.rules
    if pack is None:
        if rule == DRAWDOWN:
            assert tier.max_drawdown is not None
            return {"max_drawdown": format_ratio(tier.max_drawdown)}
        assert tier.max_risk_per_trade is not None
        return {"max_risk_per_trade": format_ratio(tier.max_risk_per_trade)}
    rule_obj = {MAX_LOSS: pack.max_loss, DAILY_LOSS: pack.daily_loss}.get(rule, pack.risk_per_trade)
    assert rule_obj is not None
    return rule_obj.to_wire()


def _floor(state: AccountState, rule: str, peak_cents: int) -> Floor | None:
    """The floor of a loss rule with its explanation, for a peak balance of `peak_cents`."""
    tier = state.tier
    pack = tier.rules
    book = state.book
    start = state.starting_balance_cents
    if pack is None:
        if rule != DRAWDOWN:
            return None
        assert tier.max_drawdown is not None
        return drawdown_floor(peak_cents, tier.max_drawdown)
    assert book is not None
    if rule == MAX_LOSS and pack.max_loss is not None:
        return max_loss_floor(
            pack.max_loss,
            starting_balance_cents=start,
            highest_equity_cents=peak_cents,
            highest_closed_day_balance_cents=book.highest_closed_balance_cents,
            closed_day=book.highest_closed_day,
        )
    if rule == DAILY_LOSS and pack.daily_loss is not None:
        return daily_loss_floor(
            pack.daily_loss, anchor_cents=book.day_anchor_cents, starting_balance_cents=start
        )
    return None


def _risk_limit(state: AccountState) -> Decimal:
    pack = state.tier.rules
    if pack is None or pack.risk_per_trade is None:
        limit = state.tier.max_risk_per_trade
        assert limit is not None
        return limit
    return pack.risk_per_trade.limit


def _evidence(
    state: AccountState, rule: str, reading: Reading, event: TradeEvent, before: _Figures
) -> dict[str, Any]:
    """A breach's evidence (CONTRACT section 4a): the trigger as received, the figures before
    and after it, the rule's terms, the formula with its numbers, and their SHA-256."""
    book = state.book
    day: date = book.day if book is not None else DayClock().day_of(event.occurred_at)
    anchor = book.day_anchor_cents if book is not None else None
    equity = state.current_balance_cents
    floor_after = _floor(state, rule, state.peak_balance_cents)
    floor_before = _floor(state, rule, before.peak_balance_cents)
    if floor_after is not None:
        formula = formula_line(equity, floor_after)
    else:
        formula = risk_formula(state.max_notional_cents, equity, _risk_limit(state))
    trigger = _json_safe(event.received) if event.received is not None else event.to_wire()
    return make_evidence(
        trigger=trigger,
        before=evidence_state(
            equity_cents=before.equity_cents,
            balance_cents=before.balance_cents,
            peak_balance_cents=before.peak_balance_cents,
            day=day,
            day_anchor_cents=anchor,
            floor_cents=None if floor_before is None else floor_before.cents,
        ),
        after=evidence_state(
            equity_cents=equity,
            balance_cents=state.balance_cents,
            peak_balance_cents=state.peak_balance_cents,
            day=day,
            day_anchor_cents=anchor,
            floor_cents=None if floor_after is None else floor_after.cents,
        ),
        terms=_rule_terms(state, rule),
        formula=formula,
    )


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


def _request(state: AccountState, cmd: RequestWithdrawal, archived: Withdrawal | None) -> Outcome:
    if cmd.user_id != state.user_id:
        # Said the way the HTTP API says it: no hint that another user's account exists.
        return Outcome(
            state, reply=Reply.refuse(Refusal(Code.UNKNOWN_ACCOUNT, "no such funded account"))
        )
    existing = state.withdrawals.get(cmd.withdrawal_id) or archived
    if existing is not None:
        # The same request under a new event id (e.g. a client retry): answer it again, unless
        # it asks for something else than the withdrawal its key named.
        if (existing.amount_cents, existing.payment_method, existing.destination) != (
            cmd.amount_cents,
            cmd.payment_method,
            cmd.destination,
        ):
            return Outcome(state, reply=_key_reused(), duplicate=True)
        return Outcome(state, reply=Reply.accept(existing, state.account_id), duplicate=True)
    refusal = request_refusal(state, cmd)
    if refusal is None and state.open_withdrawals_count >= MAX_OPEN_WITHDRAWALS:
        refusal = Refusal(
            TOO_MANY_OPEN_WITHDRAWALS,
            f"at most {MAX_OPEN_WITHDRAWALS} withdrawals may be pending or in payment at once",
        )
    if refusal is not None:
        # Nothing of the account changes, but the answer is kept: read again after a crash,
        # or repeated after Redis lost the first answer, the same request gets the same refusal
        # (see `_duplicate`).
        state.remember(cmd.event_id, refusal.code)
        state.version += 1
        return Outcome(
            state,
            reply=Reply.refuse(refusal),
            changed=True,
            remember=Remembered(
                refusal=(refusal.code, refusal.message),
                terms=_terms(cmd),
                version=state.version,
                details=refusal.details,
            ),
        )

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
    return _commit(state, cmd, log, Reply.accept(withdrawal, state.account_id))


def _pending(
    state: AccountState, withdrawal_id: str, archived: Withdrawal | None
) -> Withdrawal | Refusal:
    withdrawal = state.withdrawals.get(withdrawal_id) or archived
    if withdrawal is None:
        return Refusal(Code.UNKNOWN_WITHDRAWAL, f"no withdrawal {withdrawal_id} on this account")
    if withdrawal.status != PENDING:
        return Refusal(Code.NOT_PENDING, f"the withdrawal is {withdrawal.status}")
    return withdrawal


def _approve(state: AccountState, cmd: ApproveWithdrawal, archived: Withdrawal | None) -> Outcome:
    found = _pending(state, cmd.withdrawal_id, archived)
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
    return _commit(state, cmd, log, Reply.accept(decided, state.account_id))


def _reject(state: AccountState, cmd: RejectWithdrawal, archived: Withdrawal | None) -> Outcome:
    found = _pending(state, cmd.withdrawal_id, archived)
    if isinstance(found, Refusal):
        return Outcome(state, reply=Reply.refuse(found))
    rejected = transition(found, REJECTED, rejected_at=cmd.at, rejection_reason=cmd.reason)
    state.withdrawals[rejected.withdrawal_id] = rejected
    log = _log(state, cmd)
    log.withdrawal_rejected(rejected, cmd.admin_id)
    return _commit(state, cmd, log, Reply.accept(rejected, state.account_id))


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


def _payout_succeeded(state: AccountState, cmd: PayoutSucceeded) -> Outcome:
    found = _known(state, cmd.withdrawal_id)
    if isinstance(found, Outcome):
        return found
    if found.status != APPROVED:
        if found.stripe_payout_id == cmd.stripe_transfer_id:
            # Already recorded (completed, perhaps reversed since): a repeat of the same result.
            return Outcome(state, duplicate=True)
        return _not_from(state, found, "payout_succeeded")
    held = found.held_reversal
    completed = transition(
        found,
        COMPLETED,
        completed_at=cmd.at,
        stripe_payout_id=cmd.stripe_transfer_id,
        held_reversal=None,
    )
    state.withdrawals[completed.withdrawal_id] = completed
    state.total_withdrawals_cents += completed.amount_cents
    book = state.book
    if book is not None:
        last = book.last_payout_requested_at
        if last is None or completed.requested_at > last:
            book.last_payout_requested_at = completed.requested_at
    log = _log(state, cmd)
    log.withdrawal_completed(completed)
    if held is not None and held[0] == cmd.stripe_transfer_id:
        # Stripe told of a reversal before this result arrived: it applies now. A held
        # reversal of another transfer is not this withdrawal's and is dropped.
        _apply_reversal(state, completed, held[1], cmd.at, log)
    return _commit(state, cmd, log)


def _payout_failed(state: AccountState, cmd: PayoutFailed) -> Outcome:
    found = _known(state, cmd.withdrawal_id)
    if isinstance(found, Outcome):
        return found
    if found.status != APPROVED:
        if found.status == FAILED and found.stripe_payout_id is None:
            return Outcome(state, duplicate=True)
        return _not_from(state, found, "payout_failed")
    failed = transition(
        found, FAILED, rejected_at=cmd.at, rejection_reason=cmd.reason, held_reversal=None
    )
    state.withdrawals[failed.withdrawal_id] = failed
    log = _log(state, cmd)
    log.withdrawal_failed(failed)
    return _commit(state, cmd, log)


def _apply_reversal(
    state: AccountState, w: Withdrawal, cumulative_cents: int, at: Any, log: FactLog
) -> bool:
    """Give back exactly the newly reversed cents (CONTRACT section 5): the transfer's
    cumulative reversed amount less what was already given back. Fully reversed: `failed`."""
    target = min(cumulative_cents, w.amount_cents)
    newly = target - w.reversed_cents
    if newly <= 0:
        return False
    updated = replace(w, reversed_cents=target)
    # The money came back: it no longer counts as paid, so the share covers it again.
    state.total_withdrawals_cents -= newly
    log.withdrawal_reversed(updated, newly)
    if target == w.amount_cents:
        updated = transition(
            updated, FAILED, rejected_at=at, rejection_reason=str(Code.TRANSFER_REVERSED)
        )
        log.withdrawal_failed(updated)
    state.withdrawals[updated.withdrawal_id] = updated
    return True


def _reverse(state: AccountState, cmd: ReverseTransfer, archived: Withdrawal | None) -> Outcome:
    found = state.withdrawals.get(cmd.withdrawal_id) or archived
    if found is None:
        return Outcome(
            state, dead_letter=UNKNOWN_WITHDRAWAL, detail=f"no withdrawal {cmd.withdrawal_id}"
        )
    if found.stripe_payout_id is not None and found.stripe_payout_id != cmd.stripe_transfer_id:
        return Outcome(
            state,
            dead_letter=TRANSFER_MISMATCH,
            detail=f"withdrawal {found.withdrawal_id} was paid by {found.stripe_payout_id}",
        )
    if found.status == APPROVED:
        # The payout result is not applied yet: keep the reversal (the highest cumulative
        # figure seen) and apply it once the transfer is known (`_payout_succeeded`).
        held = found.held_reversal
        if held is not None and held[0] == cmd.stripe_transfer_id:
            if cmd.amount_reversed_cents <= held[1]:
                return Outcome(state, duplicate=True)
        state.withdrawals[found.withdrawal_id] = replace(
            found, held_reversal=(cmd.stripe_transfer_id, cmd.amount_reversed_cents)
        )
        return _commit(state, cmd, _log(state, cmd))
    if found.status == COMPLETED:
        state.withdrawals[found.withdrawal_id] = found  # back in the value if it was archived
        log = _log(state, cmd)
        if not _apply_reversal(state, found, cmd.amount_reversed_cents, cmd.at, log):
            # A stale or repeated figure (events can come out of order): nothing more came back.
            if archived is not None:
                del state.withdrawals[found.withdrawal_id]
            return Outcome(state, duplicate=True)
        return _commit(state, cmd, log)
    if found.status == FAILED and found.rejection_reason == Code.TRANSFER_REVERSED:
        return Outcome(state, duplicate=True)
    return _not_from(state, found, "reverse_transfer")
