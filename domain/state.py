"""The state of one funded account, its derived figures and its stored / wire forms.

Only what cannot be derived is stored (realized P&L, positions, peak, withdrawals); the
current balance, reserved and withdrawable amounts are computed, so they always equal the sum
of their parts (CONTRACT sections 4 and 5).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.daybook import DayBook, PackTerms, rolled, stored_int
from domain.money import format_cents, format_decimal, split_round_down
from domain.rulepacks import (
    DAILY_LOSS,
    MAX_LOSS,
    Reading,
    legacy_drawdown_reading,
    loss_reading,
    loss_status,
    risk_reading,
)
from domain.rules import (
    DRAWDOWN,
    RISK_PER_TRADE,
    RULES,
    SAFE,
    STATUSES,
    drawdown_band,
    risk_per_trade_band,
)
from domain.tiers import Tier, stored_tier
from domain.timestamps import format_ts, format_ts_or_none, parse_ts
from domain.withdrawals import IN_FLIGHT, PENDING, Withdrawal

__all__ = [
    "ACTIVE",
    "CLOSED",
    "MAX_OPEN_POSITIONS",
    "MAX_OPEN_WITHDRAWALS",
    "RECENT_IDS",
    "RECENT_SETTLED",
    "STATE_FORMAT",
    "AccountState",
    "CorruptState",
    "Position",
]

ACTIVE = "active"
CLOSED = "closed"
# Bumped when the stored form changes incompatibly; `from_dict` refuses other formats.
STATE_FORMAT = 2


class CorruptState(ValueError):
    """A stored account that cannot be read back."""


@dataclass(frozen=True)
class Position:
    position_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    notional_cents: int
    unrealized_pnl_cents: int
    opened_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "position_id": self.position_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": format_decimal(self.quantity),
            "price": format_decimal(self.price),
            "notional": format_cents(self.notional_cents),
            "unrealized_pnl": format_cents(self.unrealized_pnl_cents),
            "opened_at": format_ts(self.opened_at),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "position_id": self.position_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": format_decimal(self.quantity),
            "price": format_decimal(self.price),
            "notional_cents": self.notional_cents,
            "unrealized_pnl_cents": self.unrealized_pnl_cents,
            "opened_at": format_ts(self.opened_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(
            position_id=str(data["position_id"]),
            symbol=str(data["symbol"]),
            side=str(data["side"]),
            quantity=Decimal(data["quantity"]),
            price=Decimal(data["price"]),
            notional_cents=stored_int(data["notional_cents"]),
            unrealized_pnl_cents=stored_int(data["unrealized_pnl_cents"]),
            opened_at=parse_ts(data["opened_at"]),
        )


def _settled_order(w: Withdrawal) -> tuple[datetime, datetime, str]:
    """Oldest settlement first: the settlement time (completion, rejection or failure)."""
    at = w.rejected_at or w.completed_at or w.approved_at or w.requested_at
    return (at, w.requested_at, w.withdrawal_id)


# Bounds of the stored value (CONTRACT: no input, however long-lived the account, may make it
# unsendable; tests/unit/domain/test_bounds.py builds the largest value these allow).
# Open positions: a `position_opened` past this goes to the dead-letter topic.
MAX_OPEN_POSITIONS = 200
# Withdrawals in flight (pending or approved): a request past this is refused.
MAX_OPEN_WITHDRAWALS = 20
# Settled withdrawals kept in the value after they settle (newest first out of it); older ones
# live in the withdrawal archive table (for reversals) and PostgreSQL (for the list route).
RECENT_SETTLED = 8
# Ids of the last inputs applied, kept with the value: a second line of defence behind the
# applied-ids table for producer redeliveries right after a crash (see agents/accounts.py).
RECENT_IDS = 64


@dataclass
class AccountState:
    """One funded account. Mutated only by `domain.account.handle`."""

    account_id: str
    user_id: str
    assessment_id: str
    # A copy of the tier's terms at activation: later tier edits do not reach live accounts.
    tier: Tier
    status: str
    activated_at: datetime
    starting_balance_cents: int
    peak_balance_cents: int
    updated_at: datetime
    closed_at: datetime | None = None
    closure_reason: str | None = None
    realized_pnl_cents: int = 0
    positions: dict[str, Position] = field(default_factory=dict)
    closed_positions_count: int = 0
    # Sum of COMPLETED withdrawals: what the trader was actually paid.
    total_withdrawals_cents: int = 0
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)
    rule_status: dict[str, str] = field(default_factory=lambda: dict.fromkeys(RULES, SAFE))
    # The last RECENT_IDS inputs applied, oldest first: (event id, refusal code or None). The
    # newest is the input that made `version`: one entry per version.
    recent_ids: deque[tuple[str, str | None]] = field(default_factory=deque)
    # +1 on every applied change: the database sink keeps the row with the highest version.
    version: int = 0
    # A rule-pack account's days (CONTRACT section 4a); None for a legacy tier.
    book: DayBook | None = None

    # --- derived figures -----------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    @property
    def unrealized_pnl_cents(self) -> int:
        return sum(p.unrealized_pnl_cents for p in self.positions.values())

    @property
    def current_balance_cents(self) -> int:
        return self.starting_balance_cents + self.realized_pnl_cents + self.unrealized_pnl_cents

    @property
    def profit_cents(self) -> int:
        return self.current_balance_cents - self.starting_balance_cents

    @property
    def trader_share_cents(self) -> int:
        """The trader's share of the profit, rounded down to the cent (negative on a loss)."""
        return split_round_down(self.tier.profit_split, self.profit_cents)

    @property
    def reserved_cents(self) -> int:
        """Pending and approved withdrawals: promised but not yet paid."""
        return sum(w.amount_cents for w in self.withdrawals.values() if w.status in IN_FLIGHT)

    @property
    def withdrawable_cents(self) -> int:
        """CONTRACT section 5 (with the fix): share - paid - reserved, never below zero."""
        available = self.trader_share_cents - self.total_withdrawals_cents - self.reserved_cents
        return max(0, available)

    @property
    def pending_count(self) -> int:
        return sum(1 for w in self.withdrawals.values() if w.status == PENDING)

    @property
    def max_notional_cents(self) -> int | None:
        if not self.positions:
            return None
        return max(p.notional_cents for p in self.positions.values())

    @property
    def balance_cents(self) -> int:
        """The starting balance plus the realized P&L (closed positions only)."""
        return self.starting_balance_cents + self.realized_pnl_cents

    @property
    def pack(self) -> PackTerms | None:
        return self.tier.terms

    @property
    def rule_names(self) -> tuple[str, ...]:
        """The account's rules, in the order a closure names them."""
        terms = self.tier.terms
        return RULES if terms is None else terms.rule_names

    def rule_statuses(self) -> dict[str, str]:
        """The band of every rule from the current figures: integer arithmetic for the loss
        rules, the exact band of section 4 for the others (the per-event path)."""
        equity = self.current_balance_cents
        terms = self.tier.terms
        if terms is None:
            assert self.tier.max_drawdown is not None and self.tier.max_risk_per_trade is not None
            return {
                DRAWDOWN: drawdown_band(self.peak_balance_cents, equity, self.tier.max_drawdown),
                RISK_PER_TRADE: risk_per_trade_band(
                    self.max_notional_cents, equity, self.tier.max_risk_per_trade
                ),
            }
        statuses: dict[str, str] = {}
        for rule in terms.rule_names:
            if rule == MAX_LOSS:
                floor = self.floor_cents(rule)
                statuses[rule] = loss_status(equity - floor, terms.max_loss_allowance_cents)
            elif rule == DAILY_LOSS:
                floor = self.floor_cents(rule)
                statuses[rule] = loss_status(equity - floor, terms.daily_allowance_cents)
            else:
                risk = terms.pack.risk_per_trade
                assert risk is not None
                statuses[rule] = risk_per_trade_band(self.max_notional_cents, equity, risk.limit)
        return statuses

    def floor_cents(self, rule: str) -> int:
        """The floor of a loss rule of the account's pack, from the current figures."""
        terms = self.tier.terms
        book = self.book
        assert terms is not None and book is not None
        if rule == MAX_LOSS:
            return terms.max_loss_floor_cents(
                self.peak_balance_cents, book.highest_closed_balance_cents
            )
        return book.day_anchor_cents - terms.daily_allowance_cents

    def readings(self) -> dict[str, Reading]:
        """Every rule's reading (`value`, `threshold`, `status`, `remaining`, `floor`)."""
        equity = self.current_balance_cents
        terms = self.tier.terms
        if terms is None:
            assert self.tier.max_drawdown is not None and self.tier.max_risk_per_trade is not None
            return {
                DRAWDOWN: legacy_drawdown_reading(
                    self.peak_balance_cents, equity, self.tier.max_drawdown
                ),
                RISK_PER_TRADE: risk_reading(
                    self.max_notional_cents, equity, self.tier.max_risk_per_trade
                ),
            }
        start = self.starting_balance_cents
        readings: dict[str, Reading] = {}
        for rule in terms.rule_names:
            if rule == MAX_LOSS:
                allowance = terms.max_loss_allowance_cents
                readings[rule] = loss_reading(equity, self.floor_cents(rule), allowance, start)
            elif rule == DAILY_LOSS:
                allowance = terms.daily_allowance_cents
                readings[rule] = loss_reading(equity, self.floor_cents(rule), allowance, start)
            else:
                risk = terms.pack.risk_per_trade
                assert risk is not None
                readings[rule] = risk_reading(self.max_notional_cents, equity, risk.limit)
        return readings

    def as_of(self, at: datetime) -> AccountState:
        """The account as a read at `at` sees it: a rule-pack account idle since an earlier
        day is rolled over to the day of `at` (a copy; the stored state does not change)."""
        terms = self.tier.terms
        book = self.book
        if terms is None or book is None or at < book.day_end or not self.is_active:
            return self
        moved = rolled(
            book,
            terms,
            at,
            realized_pnl_cents=self.realized_pnl_cents,
            equity_cents=self.current_balance_cents,
        )
        return replace(self, book=moved, rule_status=dict(self.rule_status))

    @property
    def open_withdrawals_count(self) -> int:
        return sum(1 for w in self.withdrawals.values() if w.status in IN_FLIGHT)

    # --- recent inputs ---------------------------------------------------------------------

    def recent(self, event_id: str) -> tuple[str, str | None] | None:
        """The entry of `event_id` if it is one of the last RECENT_IDS inputs applied."""
        for entry in self.recent_ids:
            if entry[0] == event_id:
                return entry
        return None

    def remember(self, event_id: str, refusal_code: str | None = None) -> None:
        self.recent_ids.append((event_id, refusal_code))
        while len(self.recent_ids) > RECENT_IDS:
            self.recent_ids.popleft()

    def settle_out(self) -> list[Withdrawal]:
        """Move all but the RECENT_SETTLED newest settled withdrawals out of the value; they are
        returned for the archive. In-flight ones always stay."""
        settled = [w for w in self.withdrawals.values() if w.status not in IN_FLIGHT]
        if len(settled) <= RECENT_SETTLED:
            return []
        settled.sort(key=_settled_order)
        out = settled[: len(settled) - RECENT_SETTLED]
        for w in out:
            del self.withdrawals[w.withdrawal_id]
        return out

    # --- wire forms (CONTRACT section 7) ---------------------------------------------------

    def to_wire_summary(self) -> dict[str, Any]:
        """One entry of `GET /funded-accounts`."""
        return {
            "id": self.account_id,
            "status": self.status,
            "tier_id": self.tier.tier_id,
            "activated_at": format_ts(self.activated_at),
            "closed_at": format_ts_or_none(self.closed_at),
            "closure_reason": self.closure_reason,
            "starting_balance": format_cents(self.starting_balance_cents),
            "current_balance": format_cents(self.current_balance_cents),
            "peak_balance": format_cents(self.peak_balance_cents),
            "realized_pnl": format_cents(self.realized_pnl_cents),
            "unrealized_pnl": format_cents(self.unrealized_pnl_cents),
            "total_withdrawals": format_cents(self.total_withdrawals_cents),
            "withdrawable_amount": format_cents(self.withdrawable_cents),
            "withdrawals": {
                "pending": self.pending_count,
                "completed_total": format_cents(self.total_withdrawals_cents),
            },
        }

    def to_wire_detail(self) -> dict[str, Any]:
        """`GET /funded-accounts/{id}`: the summary plus terms, positions and rules."""
        return {
            **self.to_wire_summary(),
            "user_id": self.user_id,
            "tier": self.tier.to_wire(),
            "positions": [p.to_wire() for p in self.positions.values()],
            "rules": {rule: reading.to_wire() for rule, reading in self.readings().items()},
            "updated_at": format_ts(self.updated_at),
            **self.day_wire(),
        }

    def day_wire(self) -> dict[str, Any]:
        """A rule-pack account's `trading_day`: the day, its reset instant, its anchor, the
        lock; nothing for a legacy tier."""
        book = self.book
        if book is None:
            return {}
        return {
            "trading_day": {
                "day": book.day.isoformat(),
                "resets_at": format_ts(book.day_end),
                "day_anchor": format_cents(book.day_anchor_cents),
                "day_pnl": format_cents(book.day_pnl_cents(self.realized_pnl_cents)),
                "locked_until": format_ts_or_none(book.locked_until),
            }
        }

    def withdrawals_wire(self) -> list[dict[str, Any]]:
        """Every withdrawal object, newest `requested_at` first."""
        ordered = sorted(
            self.withdrawals.values(),
            key=lambda w: (w.requested_at, w.withdrawal_id),
            reverse=True,
        )
        return [w.to_wire(self.account_id) for w in ordered]

    # --- stored form -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and lossless: `from_dict(s.to_dict()) == s`. Money as integer cents."""
        return {
            "format": STATE_FORMAT,
            "account_id": self.account_id,
            "user_id": self.user_id,
            "assessment_id": self.assessment_id,
            "tier": self.tier.wire,
            "status": self.status,
            "activated_at": format_ts(self.activated_at),
            "closed_at": format_ts_or_none(self.closed_at),
            "closure_reason": self.closure_reason,
            "starting_balance_cents": self.starting_balance_cents,
            "realized_pnl_cents": self.realized_pnl_cents,
            "peak_balance_cents": self.peak_balance_cents,
            "positions": [p.to_dict() for p in self.positions.values()],
            "closed_positions_count": self.closed_positions_count,
            "total_withdrawals_cents": self.total_withdrawals_cents,
            "withdrawals": [w.to_dict() for w in self.withdrawals.values()],
            "rule_status": dict(self.rule_status),
            "recent_ids": [[e, code] for e, code in self.recent_ids],
            "version": self.version,
            "updated_at": format_ts(self.updated_at),
            **({} if self.book is None else {"book": self.book.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccountState:
        try:
            return cls._from_dict(data)
        except CorruptState:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise CorruptState(f"stored account cannot be read: {exc!r}") from exc

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> AccountState:
        if data.get("format") == 1:
            data = upgrade_format_1(data)
        if data.get("format") != STATE_FORMAT:
            raise CorruptState(f"unknown stored account format {data.get('format')!r}")
        status = data["status"]
        if status not in (ACTIVE, CLOSED):
            raise CorruptState(f"unknown account status {status!r}")
        tier = stored_tier(data["tier"])
        terms = tier.terms
        names = RULES if terms is None else terms.rule_names
        rule_status = {rule: str(data["rule_status"][rule]) for rule in names}
        if any(s not in STATUSES for s in rule_status.values()):
            raise CorruptState(f"unknown rule status in {rule_status!r}")
        positions = [Position.from_dict(p) for p in data["positions"]]
        withdrawals = [Withdrawal.from_dict(w) for w in data["withdrawals"]]
        recent: deque[tuple[str, str | None]] = deque(
            (str(e), None if c is None else str(c)) for e, c in data["recent_ids"]
        )
        closed_at = data.get("closed_at")
        return cls(
            account_id=str(data["account_id"]),
            user_id=str(data["user_id"]),
            assessment_id=str(data["assessment_id"]),
            tier=tier,
            status=status,
            activated_at=parse_ts(data["activated_at"]),
            closed_at=None if closed_at is None else parse_ts(closed_at),
            closure_reason=data.get("closure_reason"),
            starting_balance_cents=stored_int(data["starting_balance_cents"]),
            realized_pnl_cents=stored_int(data["realized_pnl_cents"]),
            peak_balance_cents=stored_int(data["peak_balance_cents"]),
            positions={p.position_id: p for p in positions},
            closed_positions_count=stored_int(data["closed_positions_count"]),
            total_withdrawals_cents=stored_int(data["total_withdrawals_cents"]),
            withdrawals={w.withdrawal_id: w for w in withdrawals},
            rule_status=rule_status,
            recent_ids=recent,
            version=stored_int(data["version"]),
            updated_at=parse_ts(data["updated_at"]),
            book=None if data.get("book") is None else DayBook.from_dict(data["book"]),
        )


def upgrade_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 kept every applied id (up to the old 10,000 window) and the refusals inside the
    value. Format 2 keeps the last RECENT_IDS of them; the agent moves the rest into the
    applied-ids table on first load (`legacy_memory`)."""
    refused = {str(e): str(c) for e, c, _ in data.get("refusals", [])}
    ids = [str(e) for e in data["applied_event_ids"]][-RECENT_IDS:]
    upgraded = {k: v for k, v in data.items() if k not in ("applied_event_ids", "refusals")}
    upgraded["recent_ids"] = [[e, refused.get(e)] for e in ids]
    upgraded["format"] = STATE_FORMAT
    return upgraded


def legacy_memory(data: dict[str, Any]) -> list[tuple[str, tuple[str, str] | None]]:
    """The applied ids of a format-1 value, with the refusal answer of the refused ones."""
    if data.get("format") != 1:
        return []
    refused = {str(e): (str(c), str(m)) for e, c, m in data.get("refusals", [])}
    return [(str(e), refused.get(str(e))) for e in data.get("applied_event_ids", [])]
