"""A rule-pack account's trading days and its rules' figures (CONTRACT section 4a), bounded.

`PackTerms` is a tier's rule pack with what only depends on the tier worked out once (the
allowances in cents, the lock, the day clock), so the per-event path is integer arithmetic.

`DayBook` is what the account keeps of its days: the current day and where it ends, the day's
anchor and opening realized P&L, the counters the payout gates need (trading days, winning
days, the best day), the highest closing balance of a closed day, the lock, and the
`requested_at` of the last completed withdrawal. A fixed handful of numbers whatever the
account's age: the gates need counts, never the list of days.

Days follow event time (`roll`): an input of a later day first closes the account's day and
opens the new one with the anchors of the state just before that input; an input of an earlier
day is applied to the current day, which is never reopened. Reads roll a copy (`rolled`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from domain.rulepacks import (
    ACTION_CLOSE,
    DAILY_LOSS,
    MAX_LOSS,
    MODE_STATIC,
    MODE_TRAILING,
    RISK_PER_TRADE,
    GateResult,
    RulePack,
    consistency_of,
    daily_anchor,
    min_trading_days,
    min_winning_days,
    payout_interval_days,
)
from domain.timestamps import format_ts, format_ts_or_none, parse_ts, parse_ts_or_none
from domain.tradingdays import DayClock

__all__ = ["DayBook", "PackTerms", "day_gates", "open_book", "roll", "rolled", "stored_int"]


@dataclass(frozen=True)
class PackTerms:
    """A tier's rule pack against its starting balance S, worked out once per tier."""

    pack: RulePack
    starting_balance_cents: int
    clock: DayClock
    rule_names: tuple[str, ...]
    max_loss_allowance_cents: int
    max_loss_lock_cents: int | None
    daily_allowance_cents: int

    @classmethod
    def of(cls, pack: RulePack, starting_balance_cents: int) -> PackTerms:
        names = tuple(
            name
            for name, rule in (
                (MAX_LOSS, pack.max_loss),
                (DAILY_LOSS, pack.daily_loss),
                (RISK_PER_TRADE, pack.risk_per_trade),
            )
            if rule is not None
        )
        max_loss = pack.max_loss
        daily = pack.daily_loss
        return cls(
            pack=pack,
            starting_balance_cents=starting_balance_cents,
            clock=pack.clock,
            rule_names=names,
            max_loss_allowance_cents=(
                0 if max_loss is None else max_loss.allowance_cents(starting_balance_cents)
            ),
            max_loss_lock_cents=(
                None if max_loss is None else max_loss.lock_cents(starting_balance_cents)
            ),
            daily_allowance_cents=(
                0 if daily is None else daily.allowance_cents(starting_balance_cents)
            ),
        )

    def action(self, rule: str) -> str:
        """What breaking `rule` does: `close`, or `lock` for a daily loss that locks."""
        daily = self.pack.daily_loss
        if rule == DAILY_LOSS and daily is not None:
            return daily.action
        return ACTION_CLOSE

    def max_loss_floor_cents(self, peak_cents: int, highest_closed_cents: int | None) -> int:
        """The `max_loss` floor in cents (`domain.rulepacks.max_loss_floor` without the words):
        static S - L; trailing (highest equity ever, the peak) - L; trailing_eod the higher of
        S - L and the highest closing balance of a closed day - L; a lock caps either trailing
        floor. Its inputs never decrease, so the floor never moves down."""
        rule = self.pack.max_loss
        start = self.starting_balance_cents
        allowance = self.max_loss_allowance_cents
        if rule is None or rule.mode == MODE_STATIC:
            return start - allowance
        if rule.mode == MODE_TRAILING:
            floor = max(start, peak_cents) - allowance
        else:
            floor = start - allowance
            if highest_closed_cents is not None:
                floor = max(floor, highest_closed_cents - allowance)
        lock = self.max_loss_lock_cents
        return floor if lock is None else min(floor, lock)


@dataclass
class DayBook:
    """What a rule-pack account keeps of its days (see the module docstring)."""

    day: date
    # The instant `day` ends (the next reset), aware UTC: an input at or after it rolls over.
    day_end: datetime
    day_start_realized_cents: int
    # The daily-loss anchor A taken at the day's start (the starting balance on day one).
    day_anchor_cents: int
    day_traded: bool = False
    # Closed days only (the current day is added when a gate is read).
    trading_days: int = 0
    winning_days: int = 0
    best_day: date | None = None
    best_day_pnl_cents: int = 0
    highest_closed_balance_cents: int | None = None
    highest_closed_day: date | None = None
    # A daily loss that locks: the lock's end (None: not locked), and whether the day broke.
    locked_until: datetime | None = None
    daily_breached: bool = False
    # `requested_at` of the last withdrawal that completed (payout_interval_days).
    last_payout_requested_at: datetime | None = None

    def day_pnl_cents(self, realized_pnl_cents: int) -> int:
        """The current day's closed P&L so far."""
        return realized_pnl_cents - self.day_start_realized_cents

    def trading_days_so_far(self) -> int:
        """Trading days, the current day included once a position was opened or closed on it
        (what `min_trading_days` counts). Rolling over does not change it."""
        return self.trading_days + (1 if self.day_traded else 0)

    def winning_days_so_far(self, realized_pnl_cents: int, min_profit_cents: int) -> int:
        """Winning days, the current day included if it traded and its closed P&L so far
        reaches `min_profit_cents` (what `min_winning_days` counts). Rolling over does not
        change it."""
        today = self.day_traded and self.day_pnl_cents(realized_pnl_cents) >= min_profit_cents
        return self.winning_days + (1 if today else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "day_end": format_ts(self.day_end),
            "day_start_realized_cents": self.day_start_realized_cents,
            "day_anchor_cents": self.day_anchor_cents,
            "day_traded": self.day_traded,
            "trading_days": self.trading_days,
            "winning_days": self.winning_days,
            "best_day": None if self.best_day is None else self.best_day.isoformat(),
            "best_day_pnl_cents": self.best_day_pnl_cents,
            "highest_closed_balance_cents": self.highest_closed_balance_cents,
            "highest_closed_day": (
                None if self.highest_closed_day is None else self.highest_closed_day.isoformat()
            ),
            "locked_until": format_ts_or_none(self.locked_until),
            "daily_breached": self.daily_breached,
            "last_payout_requested_at": format_ts_or_none(self.last_payout_requested_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DayBook:
        def day_or_none(value: Any) -> date | None:
            return None if value is None else date.fromisoformat(str(value))

        highest = data["highest_closed_balance_cents"]
        return cls(
            day=date.fromisoformat(str(data["day"])),
            day_end=parse_ts(data["day_end"]),
            day_start_realized_cents=stored_int(data["day_start_realized_cents"]),
            day_anchor_cents=stored_int(data["day_anchor_cents"]),
            day_traded=bool(data["day_traded"]),
            trading_days=stored_int(data["trading_days"]),
            winning_days=stored_int(data["winning_days"]),
            best_day=day_or_none(data["best_day"]),
            best_day_pnl_cents=stored_int(data["best_day_pnl_cents"]),
            highest_closed_balance_cents=None if highest is None else stored_int(highest),
            highest_closed_day=day_or_none(data["highest_closed_day"]),
            locked_until=parse_ts_or_none(data["locked_until"]),
            daily_breached=bool(data["daily_breached"]),
            last_payout_requested_at=parse_ts_or_none(data["last_payout_requested_at"]),
        )


def stored_int(value: Any) -> int:
    """An integer of a stored value (a bool or anything else is refused: ValueError, which the
    account's `from_dict` reports as CorruptState)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def open_book(terms: PackTerms, activated_at: datetime) -> DayBook:
    """The book of a newly activated account: its first day is the day of its activation,
    anchored on the starting balance."""
    clock = terms.clock
    day = clock.day_of(activated_at)
    return DayBook(
        day=day,
        day_end=clock.day_end(day),
        day_start_realized_cents=0,
        day_anchor_cents=terms.starting_balance_cents,
    )


def roll(
    book: DayBook,
    terms: PackTerms,
    at: datetime,
    *,
    realized_pnl_cents: int,
    equity_cents: int,
) -> bool:
    """Move `book` to the day of `at` when that day is later than its own: close the current
    day (its trading-day, winning-day, best-day and closing-balance figures), then open the
    day of `at` with the anchor of the state given (the state just before the input at `at`).
    Days in between had no inputs: no trades, no closed P&L, the same closing balance. An
    `at` of the current day or an earlier one changes nothing. True when a lock ended."""
    if at < book.day_end:
        return False
    start = terms.starting_balance_cents
    balance = start + realized_pnl_cents
    pnl = book.day_pnl_cents(realized_pnl_cents)
    if book.day_traded:
        book.trading_days += 1
        if book.best_day is None or pnl > book.best_day_pnl_cents:
            book.best_day, book.best_day_pnl_cents = book.day, pnl
        winning = terms.pack.min_winning_days
        if winning is not None and pnl >= winning.min_profit_cents:
            book.winning_days += 1
    if book.highest_closed_balance_cents is None or balance > book.highest_closed_balance_cents:
        book.highest_closed_balance_cents = balance
        book.highest_closed_day = book.day
    clock = terms.clock
    day = clock.day_of(at)
    book.day = day
    book.day_end = clock.day_end(day)
    book.day_start_realized_cents = realized_pnl_cents
    daily = terms.pack.daily_loss
    book.day_anchor_cents = (
        balance if daily is None else daily_anchor(daily.anchor, balance, equity_cents)
    )
    book.day_traded = False
    unlocked = book.locked_until is not None
    book.locked_until = None
    book.daily_breached = False
    return unlocked


def rolled(
    book: DayBook, terms: PackTerms, at: datetime, *, realized_pnl_cents: int, equity_cents: int
) -> DayBook:
    """The book as a read at `at` sees it (a copy, rolled over when `at` is a later day)."""
    if at < book.day_end:
        return book
    copy = replace(book)
    roll(copy, terms, at, realized_pnl_cents=realized_pnl_cents, equity_cents=equity_cents)
    return copy


def day_gates(
    book: DayBook,
    terms: PackTerms,
    *,
    realized_pnl_cents: int,
    activated_at: datetime,
    requested_at: datetime,
) -> list[GateResult]:
    """Every payout gate of the pack, in the contract's order, the current day included:
    min_trading_days, min_winning_days, consistency, payout_interval_days."""
    pack = terms.pack
    today = book.day_pnl_cents(realized_pnl_cents)
    results: list[GateResult] = []
    if pack.min_trading_days is not None:
        days = book.trading_days_so_far()
        results.append(min_trading_days(pack.min_trading_days, days))
    winning = pack.min_winning_days
    if winning is not None:
        count = book.winning_days_so_far(realized_pnl_cents, winning.min_profit_cents)
        results.append(min_winning_days(winning.days, winning.min_profit_cents, count))
    if pack.consistency is not None:
        best_day, best = book.best_day, book.best_day_pnl_cents
        if book.day_traded and (best_day is None or today > best):
            best_day, best = book.day, today
        results.append(
            consistency_of(pack.consistency.max_best_day_share, best_day, best, realized_pnl_cents)
        )
    if pack.payout_interval_days is not None:
        since = book.last_payout_requested_at or activated_at
        results.append(payout_interval_days(pack.payout_interval_days, since, requested_at))
    return results
