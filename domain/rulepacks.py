"""Rule packs of a tier (CONTRACT section 4a): terms, floors, readings, payout gates, evidence.

Pure arithmetic, no I/O: the account logic feeds it integer cents, days and instants and keeps
the state (highest equity, closed-day balances, previous floors) itself.

Numbers follow the rest of the domain: money is integer cents, ratios are `Decimal`s parsed from
decimal strings, and whatever a ratio times money gives is an exact `Fraction` until it is
rounded once, by name, in the firm's favour:

- an allowance L = limit x S rounds DOWN to the cent (a smaller allowance, a higher floor);
- a floor computed from a ratio (the legacy drawdown floor) rounds UP;
- a `remaining` computed from a ratio (risk per trade) rounds DOWN.

A floor made of integer cents (S - L, highest equity - L, anchor - L) needs no rounding, and
neither does `remaining = equity - floor`. Statuses are decided on exact rationals with the bands
of `domain.rules.band`, so a reading is a violation exactly when equity < floor.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar

from domain.fields import FieldReader
from domain.money import format_cents, format_ratio
from domain.rules import DANGER, SAFE, VIOLATION, WARNING, band, drawdown, risk_per_trade
from domain.timestamps import format_ts
from domain.tradingdays import DEFAULT_RESET_AT, DEFAULT_RESET_TZ, DayClock, InvalidDayClock

__all__ = [
    "ACTIONS",
    "ACTION_CLOSE",
    "ACTION_LOCK",
    "ANCHORS",
    "ANCHOR_BALANCE",
    "ANCHOR_EQUITY",
    "ANCHOR_MAX",
    "CONSISTENCY",
    "CONSISTENCY_NOT_MET",
    "DAILY_LOSS",
    "GATES",
    "LOCK_AT_STARTING_BALANCE",
    "MAX_DAYS",
    "MAX_LOSS",
    "MIN_TRADING_DAYS",
    "MIN_TRADING_DAYS_NOT_MET",
    "MIN_WINNING_DAYS",
    "MIN_WINNING_DAYS_NOT_MET",
    "MODES",
    "MODE_STATIC",
    "MODE_TRAILING",
    "MODE_TRAILING_EOD",
    "PAYOUT_INTERVAL_DAYS",
    "PAYOUT_INTERVAL_NOT_MET",
    "RISK_PER_TRADE",
    "Consistency",
    "DailyLoss",
    "Floor",
    "GateResult",
    "InvalidRules",
    "MaxLoss",
    "MinWinningDays",
    "Reading",
    "RiskPerTrade",
    "RulePack",
    "allowance_cents",
    "canonical_json",
    "check_gates",
    "consistency",
    "consistency_of",
    "daily_anchor",
    "daily_floor",
    "daily_loss_floor",
    "drawdown_floor",
    "evidence_digest",
    "evidence_state",
    "formula_line",
    "legacy_drawdown_reading",
    "loss_reading",
    "loss_status",
    "make_evidence",
    "max_loss_floor",
    "min_trading_days",
    "min_winning_days",
    "parse_rules",
    "payout_interval_days",
    "ratchet_floor",
    "risk_formula",
    "risk_reading",
    "static_floor",
    "trailing_eod_floor",
    "trailing_floor",
    "verify_digest",
    "with_digest",
]

# The keys of a tier's `rules` object, in the contract's order.
MAX_LOSS = "max_loss"
DAILY_LOSS = "daily_loss"
RISK_PER_TRADE = "risk_per_trade"
CONSISTENCY = "consistency"
MIN_TRADING_DAYS = "min_trading_days"
MIN_WINNING_DAYS = "min_winning_days"
PAYOUT_INTERVAL_DAYS = "payout_interval_days"
_PACK_KEYS: tuple[str, ...] = (
    MAX_LOSS,
    DAILY_LOSS,
    RISK_PER_TRADE,
    CONSISTENCY,
    MIN_TRADING_DAYS,
    MIN_WINNING_DAYS,
    PAYOUT_INTERVAL_DAYS,
)
# Payout gates, in the order a withdrawal request checks them.
GATES: tuple[str, ...] = (MIN_TRADING_DAYS, MIN_WINNING_DAYS, CONSISTENCY, PAYOUT_INTERVAL_DAYS)

MIN_TRADING_DAYS_NOT_MET = "min_trading_days_not_met"
MIN_WINNING_DAYS_NOT_MET = "min_winning_days_not_met"
CONSISTENCY_NOT_MET = "consistency_not_met"
PAYOUT_INTERVAL_NOT_MET = "payout_interval_not_met"

MODE_STATIC = "static"
MODE_TRAILING = "trailing"
MODE_TRAILING_EOD = "trailing_eod"
MODES: tuple[str, ...] = (MODE_STATIC, MODE_TRAILING, MODE_TRAILING_EOD)

ANCHOR_BALANCE = "balance"
ANCHOR_EQUITY = "equity"
ANCHOR_MAX = "max"
ANCHORS: tuple[str, ...] = (ANCHOR_BALANCE, ANCHOR_EQUITY, ANCHOR_MAX)

ACTION_CLOSE = "close"
ACTION_LOCK = "lock"
ACTIONS: tuple[str, ...] = (ACTION_CLOSE, ACTION_LOCK)

LOCK_AT_STARTING_BALANCE = "starting_balance"

# Day counts are bounded so `timedelta(days=N)` and friends can never overflow (27 years).
MAX_DAYS = 10_000

_MAX_LOSS_KEYS = ("mode", "limit", "amount", "lock_at", "lock_at_amount")
_DAILY_LOSS_KEYS = ("limit", "amount", "anchor", "reset_tz", "reset_at", "action")
_RISK_KEYS = ("limit",)
_CONSISTENCY_KEYS = ("max_best_day_share",)
_WINNING_KEYS = ("days", "min_profit")

_ONE = Decimal(1)
_T = TypeVar("_T")
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_]{1,40}")


class InvalidRules(ValueError):
    """A `rules` object that cannot be used (its tier goes to `tiers.dlq`).

    `code` is `unknown_field`, `missing_field` or `invalid_field`; `detail` names the offending
    key by its path (`rules.daily_loss.reset_tz ...`); `reason` is `code: detail`, the same shape
    as `InvalidTier`, so a tier parser can pass it on as `InvalidTier(exc.code, exc.detail)`.
    """

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


def _invalid(detail: str) -> InvalidRules:
    return InvalidRules("invalid_field", detail)


def _key_text(key: object) -> str:
    if isinstance(key, str) and _PLAIN_KEY_RE.fullmatch(key) is not None:
        return key
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_unit_ratio(value: Decimal, path: str) -> None:
    if not (0 < value <= _ONE):
        raise _invalid(f"{path} must be above 0 and at most 1")


def _check_positive_cents(value: int, path: str) -> None:
    if value <= 0:
        raise _invalid(f"{path} must be a positive amount")


def _check_days(value: int, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= MAX_DAYS):
        raise _invalid(f"{path} must be a whole number of days from 0 to {MAX_DAYS}")


def _check_limit_or_amount(limit: Decimal | None, amount_cents: int | None, path: str) -> None:
    if limit is not None and amount_cents is not None:
        raise _invalid(f"{path}.limit and {path}.amount are both given: exactly one is allowed")
    if limit is None and amount_cents is None:
        raise InvalidRules(
            "missing_field", f"{path}.limit or {path}.amount is required (exactly one)"
        )
    if limit is not None:
        _check_unit_ratio(limit, f"{path}.limit")
    if amount_cents is not None:
        _check_positive_cents(amount_cents, f"{path}.amount")


def _limit_wire(limit: Decimal | None, amount_cents: int | None) -> dict[str, str]:
    if limit is not None:
        return {"limit": format_ratio(limit)}
    if amount_cents is not None:
        return {"amount": format_cents(amount_cents)}
    raise ValueError("a loss limit needs a limit or an amount")  # pragma: no cover - validated


def _limit_or_amount(limit: Decimal | None, amount_cents: int | None) -> Decimal | int:
    if limit is not None:
        return limit
    if amount_cents is not None:
        return amount_cents
    raise ValueError("a loss limit needs a limit or an amount")  # pragma: no cover - validated


# ---------------------------------------------------------------------------------------------
# The pack


@dataclass(frozen=True)
class MaxLoss:
    """`max_loss`: `mode` static / trailing / trailing_eod, a `limit` (ratio of S) or an
    `amount` (cents), and for a trailing mode at most one lock: `lock_at: starting_balance`
    (`lock_at_starting_balance`) or `lock_at_amount` (cents). Validated on construction."""

    mode: str
    limit: Decimal | None = None
    amount_cents: int | None = None
    lock_at_starting_balance: bool = False
    lock_at_amount_cents: int | None = None

    def __post_init__(self) -> None:
        path = f"rules.{MAX_LOSS}"
        if self.mode not in MODES:
            raise _invalid(f"{path}.mode must be one of {', '.join(MODES)}")
        _check_limit_or_amount(self.limit, self.amount_cents, path)
        if self.mode == MODE_STATIC:
            for key, given in (
                ("lock_at", self.lock_at_starting_balance),
                ("lock_at_amount", self.lock_at_amount_cents is not None),
            ):
                if given:
                    raise _invalid(
                        f"{path}.{key} is only allowed with mode {MODE_TRAILING} or "
                        f"{MODE_TRAILING_EOD}, not {MODE_STATIC}"
                    )
        if self.lock_at_starting_balance and self.lock_at_amount_cents is not None:
            raise _invalid(
                f"{path}.lock_at and {path}.lock_at_amount are both given: at most one is allowed"
            )
        if self.lock_at_amount_cents is not None:
            _check_positive_cents(self.lock_at_amount_cents, f"{path}.lock_at_amount")

    @property
    def limit_or_amount(self) -> Decimal | int:
        """The `limit` (a `Decimal` ratio of S) or else the `amount` (int cents)."""
        return _limit_or_amount(self.limit, self.amount_cents)

    def allowance_cents(self, starting_balance_cents: int) -> int:
        return allowance_cents(self.limit_or_amount, starting_balance_cents)

    def lock_cents(self, starting_balance_cents: int) -> int | None:
        """The figure the floor never rises above: S for `lock_at: starting_balance`, the
        `lock_at_amount`, or None without a lock."""
        if self.lock_at_starting_balance:
            return starting_balance_cents
        return self.lock_at_amount_cents

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"mode": self.mode, **_limit_wire(self.limit, self.amount_cents)}
        if self.lock_at_starting_balance:
            wire["lock_at"] = LOCK_AT_STARTING_BALANCE
        if self.lock_at_amount_cents is not None:
            wire["lock_at_amount"] = format_cents(self.lock_at_amount_cents)
        return wire


@dataclass(frozen=True)
class DailyLoss:
    """`daily_loss`: a `limit` or `amount`, the `anchor` (balance / equity / max), the day
    `clock` (`reset_tz`, `reset_at`) and the `action` (close / lock). Validated on construction."""

    anchor: str
    action: str
    limit: Decimal | None = None
    amount_cents: int | None = None
    clock: DayClock = field(default_factory=DayClock)

    def __post_init__(self) -> None:
        path = f"rules.{DAILY_LOSS}"
        _check_limit_or_amount(self.limit, self.amount_cents, path)
        if self.anchor not in ANCHORS:
            raise _invalid(f"{path}.anchor must be one of {', '.join(ANCHORS)}")
        if self.action not in ACTIONS:
            raise _invalid(f"{path}.action must be one of {', '.join(ACTIONS)}")

    @property
    def limit_or_amount(self) -> Decimal | int:
        return _limit_or_amount(self.limit, self.amount_cents)

    def allowance_cents(self, starting_balance_cents: int) -> int:
        return allowance_cents(self.limit_or_amount, starting_balance_cents)

    def to_wire(self) -> dict[str, Any]:
        return {
            **_limit_wire(self.limit, self.amount_cents),
            "anchor": self.anchor,
            "reset_tz": self.clock.tz,
            "reset_at": self.clock.reset_at,
            "action": self.action,
        }


@dataclass(frozen=True)
class RiskPerTrade:
    """`risk_per_trade`: largest open notional / equity must stay at or below `limit`."""

    limit: Decimal

    def __post_init__(self) -> None:
        _check_unit_ratio(self.limit, f"rules.{RISK_PER_TRADE}.limit")

    def to_wire(self) -> dict[str, Any]:
        return {"limit": format_ratio(self.limit)}


@dataclass(frozen=True)
class Consistency:
    """`consistency`: the best day's closed P&L at most `max_best_day_share` of the total."""

    max_best_day_share: Decimal

    def __post_init__(self) -> None:
        _check_unit_ratio(self.max_best_day_share, f"rules.{CONSISTENCY}.max_best_day_share")

    def to_wire(self) -> dict[str, Any]:
        return {"max_best_day_share": format_ratio(self.max_best_day_share)}


@dataclass(frozen=True)
class MinWinningDays:
    """`min_winning_days`: at least `days` days whose closed P&L is at least `min_profit`."""

    days: int
    min_profit_cents: int

    def __post_init__(self) -> None:
        path = f"rules.{MIN_WINNING_DAYS}"
        _check_days(self.days, f"{path}.days")
        _check_positive_cents(self.min_profit_cents, f"{path}.min_profit")

    def to_wire(self) -> dict[str, Any]:
        return {"days": self.days, "min_profit": format_cents(self.min_profit_cents)}


@dataclass(frozen=True)
class RulePack:
    """A tier's `rules`: each rule or gate is on when present (not None)."""

    max_loss: MaxLoss | None = None
    daily_loss: DailyLoss | None = None
    risk_per_trade: RiskPerTrade | None = None
    consistency: Consistency | None = None
    min_trading_days: int | None = None
    min_winning_days: MinWinningDays | None = None
    payout_interval_days: int | None = None

    def __post_init__(self) -> None:
        if self.min_trading_days is not None:
            _check_days(self.min_trading_days, f"rules.{MIN_TRADING_DAYS}")
        if self.payout_interval_days is not None:
            _check_days(self.payout_interval_days, f"rules.{PAYOUT_INTERVAL_DAYS}")

    @property
    def clock(self) -> DayClock:
        """The days of every rule of the tier: those of `daily_loss`, else UTC 00:00."""
        return self.daily_loss.clock if self.daily_loss is not None else DayClock()

    def check_against(self, starting_balance_cents: int) -> None:
        """Terms that only make sense against the tier's starting balance S (`InvalidRules`):
        an allowance of at least one cent, an `amount` of at most S (as a `limit` is at most
        1), and a `lock_at_amount` not below the floor the account starts with (S - L)."""
        if starting_balance_cents <= 0:
            raise ValueError("starting_balance must be positive")
        s_text = format_cents(starting_balance_cents)
        for key, rule in ((MAX_LOSS, self.max_loss), (DAILY_LOSS, self.daily_loss)):
            if rule is None:
                continue
            path = f"rules.{key}"
            allowance = rule.allowance_cents(starting_balance_cents)
            if rule.limit is not None and allowance < 1:
                raise _invalid(
                    f"{path}.limit gives an allowance below one cent on starting_balance {s_text}"
                )
            if rule.amount_cents is not None and rule.amount_cents > starting_balance_cents:
                raise _invalid(f"{path}.amount must not exceed starting_balance {s_text}")
        max_loss = self.max_loss
        if max_loss is not None and max_loss.lock_at_amount_cents is not None:
            start_floor = starting_balance_cents - max_loss.allowance_cents(starting_balance_cents)
            if max_loss.lock_at_amount_cents < start_floor:
                raise _invalid(
                    f"rules.{MAX_LOSS}.lock_at_amount must not be below the starting floor "
                    f"{format_cents(start_floor)} (starting_balance - allowance)"
                )

    def to_wire(self) -> dict[str, Any]:
        """The canonical `rules` object: the keys that are on, money and ratios as strings."""
        wire: dict[str, Any] = {}
        if self.max_loss is not None:
            wire[MAX_LOSS] = self.max_loss.to_wire()
        if self.daily_loss is not None:
            wire[DAILY_LOSS] = self.daily_loss.to_wire()
        if self.risk_per_trade is not None:
            wire[RISK_PER_TRADE] = self.risk_per_trade.to_wire()
        if self.consistency is not None:
            wire[CONSISTENCY] = self.consistency.to_wire()
        if self.min_trading_days is not None:
            wire[MIN_TRADING_DAYS] = self.min_trading_days
        if self.min_winning_days is not None:
            wire[MIN_WINNING_DAYS] = self.min_winning_days.to_wire()
        if self.payout_interval_days is not None:
            wire[PAYOUT_INTERVAL_DAYS] = self.payout_interval_days
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> RulePack:
        return parse_rules(obj)


# ---------------------------------------------------------------------------------------------
# Parsing


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(f"{path} must be an object")
    return value


def _only_known(obj: Mapping[str, Any], path: str, known: tuple[str, ...]) -> None:
    for key in obj:
        if key not in known:
            raise InvalidRules(
                "unknown_field",
                f"{path}.{_key_text(key)} is not a known term (known: {', '.join(known)})",
            )


def _reader(obj: Mapping[str, Any], path: str) -> FieldReader:
    # FieldReader's details start with the field's name; the prefix makes it a full path.
    def error(code: str, detail: str) -> InvalidRules:
        return InvalidRules(code, f"{path}.{detail}")

    return FieldReader(obj, error)


def _section(
    fields: FieldReader, key: str, known: tuple[str, ...]
) -> tuple[Mapping[str, Any], FieldReader]:
    section = fields.mapping(key)
    path = f"rules.{key}"
    _only_known(section, path, known)
    return section, _reader(section, path)


def _optional(obj: Mapping[str, Any], key: str, read: Callable[[str], _T]) -> _T | None:
    # A key present with null is read (and refused) like any other value, never taken as absent.
    return read(key) if key in obj else None


def _parse_max_loss(fields: FieldReader) -> MaxLoss:
    obj, sub = _section(fields, MAX_LOSS, _MAX_LOSS_KEYS)
    mode = sub.choice("mode", MODES)
    lock_at = _optional(obj, "lock_at", lambda k: sub.choice(k, (LOCK_AT_STARTING_BALANCE,)))
    return MaxLoss(
        mode=mode,
        limit=_optional(obj, "limit", sub.ratio),
        amount_cents=_optional(obj, "amount", sub.money),
        lock_at_starting_balance=lock_at is not None,
        lock_at_amount_cents=_optional(obj, "lock_at_amount", sub.money),
    )


def _parse_daily_loss(fields: FieldReader) -> DailyLoss:
    obj, sub = _section(fields, DAILY_LOSS, _DAILY_LOSS_KEYS)
    limit = _optional(obj, "limit", sub.ratio)
    amount_cents = _optional(obj, "amount", sub.money)
    anchor = sub.choice("anchor", ANCHORS)
    tz = sub.raw("reset_tz") if "reset_tz" in obj else DEFAULT_RESET_TZ
    reset_at = sub.raw("reset_at") if "reset_at" in obj else DEFAULT_RESET_AT
    try:
        clock = DayClock(tz=tz, reset_at=reset_at)
    except InvalidDayClock as exc:
        raise _invalid(f"rules.{DAILY_LOSS}.{exc.key} {exc.detail}") from None
    action = sub.choice("action", ACTIONS)
    return DailyLoss(
        anchor=anchor, action=action, limit=limit, amount_cents=amount_cents, clock=clock
    )


def parse_rules(obj: object, *, starting_balance_cents: int | None = None) -> RulePack:
    """A validated `RulePack` from a tier's `rules` object (CONTRACT section 4a).

    Refused with `InvalidRules`, naming the key: anything but an object; unknown keys at every
    level; a loss limit with both or neither of `limit` and `amount`; ratios outside (0, 1] or
    with more than 4 decimals; money that is not positive; an unknown `mode`, `anchor`,
    `action` or `lock_at`; a lock on `static` mode or both locks; a `reset_tz` that is no IANA
    zone or a `reset_at` that is no `HH:MM`; day counts that are not whole numbers from 0 to
    `MAX_DAYS`; booleans or strings where numbers go; a null anywhere (a rule that is off is
    left out, not null).

    `anchor` and `action` of `daily_loss` are required; `reset_tz` and `reset_at` default to
    UTC and 00:00. With `starting_balance_cents`, the terms are also checked against the tier's
    starting balance (`RulePack.check_against`).
    """
    rules = _object(obj, "rules")
    _only_known(rules, "rules", _PACK_KEYS)
    fields = _reader(rules, "rules")

    max_loss = _parse_max_loss(fields) if MAX_LOSS in rules else None
    daily_loss = _parse_daily_loss(fields) if DAILY_LOSS in rules else None
    risk = None
    if RISK_PER_TRADE in rules:
        _, sub = _section(fields, RISK_PER_TRADE, _RISK_KEYS)
        risk = RiskPerTrade(limit=sub.ratio("limit"))
    share = None
    if CONSISTENCY in rules:
        _, sub = _section(fields, CONSISTENCY, _CONSISTENCY_KEYS)
        share = Consistency(max_best_day_share=sub.ratio("max_best_day_share"))
    winning = None
    if MIN_WINNING_DAYS in rules:
        _, sub = _section(fields, MIN_WINNING_DAYS, _WINNING_KEYS)
        winning = MinWinningDays(days=sub.integer("days"), min_profit_cents=sub.money("min_profit"))
    pack = RulePack(
        max_loss=max_loss,
        daily_loss=daily_loss,
        risk_per_trade=risk,
        consistency=share,
        min_trading_days=_optional(rules, MIN_TRADING_DAYS, fields.integer),
        min_winning_days=winning,
        payout_interval_days=_optional(rules, PAYOUT_INTERVAL_DAYS, fields.integer),
    )
    if starting_balance_cents is not None:
        pack.check_against(starting_balance_cents)
    return pack


# ---------------------------------------------------------------------------------------------
# Allowances and floors (integer cents)


def allowance_cents(limit_or_amount: Decimal | int, starting_balance_cents: int) -> int:
    """The allowance L of a loss limit in cents: `limit x S` for a `limit` (a `Decimal` ratio of
    the starting balance S), or the `amount` itself (int cents).

    `limit x S` need not be whole cents (0.0333 x 100000.01 = 3330.000333): it rounds DOWN to
    the cent, in the firm's favour, since a smaller allowance is a higher floor (S - L is then
    S - limit x S rounded UP).
    """
    if isinstance(limit_or_amount, bool):
        raise TypeError("a loss limit is a Decimal ratio or int cents, not a boolean")
    if isinstance(limit_or_amount, int):
        return limit_or_amount
    if isinstance(limit_or_amount, Decimal):
        if starting_balance_cents <= 0:
            raise ValueError("a limit needs a positive starting balance")
        return math.floor(Fraction(limit_or_amount) * starting_balance_cents)
    raise TypeError(f"a loss limit is a Decimal ratio or int cents, not {type(limit_or_amount)}")


def _capped(floor_cents: int, lock_cents: int | None) -> int:
    return floor_cents if lock_cents is None else min(floor_cents, lock_cents)


def static_floor(starting_balance_cents: int, allowance_cents: int) -> int:
    """`max_loss` static: floor = S - L."""
    return starting_balance_cents - allowance_cents


def trailing_floor(
    highest_equity_cents: int, allowance_cents: int, lock_cents: int | None = None
) -> int:
    """`max_loss` trailing: floor = (highest equity ever) - L, never above `lock_cents` (S for
    `lock_at: starting_balance`, the `lock_at_amount`; None: no lock). The highest equity ever
    includes the starting balance (an account starts with equity S)."""
    return _capped(highest_equity_cents - allowance_cents, lock_cents)


def trailing_eod_floor(
    starting_balance_cents: int,
    allowance_cents: int,
    highest_closed_day_balance_cents: int | None,
    lock_cents: int | None = None,
) -> int:
    """`max_loss` trailing_eod: floor = max(S - L, highest closing balance of a closed day - L),
    never above `lock_cents`. None for the closed-day balance: no day has closed yet."""
    floor = starting_balance_cents - allowance_cents
    if highest_closed_day_balance_cents is not None:
        floor = max(floor, highest_closed_day_balance_cents - allowance_cents)
    return _capped(floor, lock_cents)


def daily_anchor(anchor: str, balance_cents: int, equity_cents: int) -> int:
    """`daily_loss` anchor A taken at the day's start: the `balance` (S + realized P&L), the
    `equity` (open positions included), or for `max` the higher of the two."""
    if anchor == ANCHOR_BALANCE:
        return balance_cents
    if anchor == ANCHOR_EQUITY:
        return equity_cents
    if anchor == ANCHOR_MAX:
        return max(balance_cents, equity_cents)
    raise ValueError(f"unknown daily_loss anchor: {anchor!r}")


def daily_floor(anchor_cents: int, allowance_cents: int) -> int:
    """`daily_loss`: floor = A - L, A the day's anchor (fixed for the whole day)."""
    return anchor_cents - allowance_cents


def ratchet_floor(previous_floor_cents: int | None, floor_cents: int) -> int:
    """A floor never moves down: the higher of the previous floor (None: there was none yet)
    and the newly computed one. (For `daily_loss` the previous floor is the same day's.)"""
    if previous_floor_cents is None:
        return floor_cents
    return max(previous_floor_cents, floor_cents)


@dataclass(frozen=True)
class Floor:
    """A floor with where it came from, for readings and the evidence's formula line.

    `source` names the figure: `starting_balance`, `highest_equity`, `closed_day_balance`,
    `anchor` or `peak_balance` (that figure less the allowance), `lock_at` / `lock_at_amount`
    (a lock capped it), `previous_floor` (the never-moves-down rule held it up). `explanation`
    is the right-hand side of the formula with its numbers.
    """

    cents: int
    allowance_cents: int
    source: str
    explanation: str


def _money(cents: int) -> str:
    return format_cents(cents)


def max_loss_floor(
    rule: MaxLoss,
    *,
    starting_balance_cents: int,
    highest_equity_cents: int | None = None,
    highest_closed_day_balance_cents: int | None = None,
    closed_day: date | None = None,
    previous_floor_cents: int | None = None,
) -> Floor:
    """The `max_loss` floor of `rule` with its provenance.

    static: S - L. trailing: max(S, `highest_equity_cents`) - L. trailing_eod: the higher of
    S - L and `highest_closed_day_balance_cents` - L (the balance at the close of the best
    closed day, `closed_day` naming it in the explanation when given). Then the lock caps it
    and `previous_floor_cents` keeps it from moving down. The cents always equal those of
    `static_floor` / `trailing_floor` / `trailing_eod_floor` followed by `ratchet_floor`.
    """
    start = starting_balance_cents
    allowance = rule.allowance_cents(start)
    minus = f" - {_money(allowance)}"
    closed = highest_closed_day_balance_cents
    if rule.mode == MODE_TRAILING:
        highest = start if highest_equity_cents is None else max(start, highest_equity_cents)
        floor = Floor(
            trailing_floor(highest, allowance),
            allowance,
            "highest_equity",
            f"highest_equity {_money(highest)}{minus}",
        )
    elif rule.mode == MODE_TRAILING_EOD and closed is not None and closed > start:
        day_text = "" if closed_day is None else f" ({closed_day.isoformat()})"
        floor = Floor(
            trailing_eod_floor(start, allowance, closed),
            allowance,
            "closed_day_balance",
            f"closed_day_balance {_money(closed)}{day_text}{minus}",
        )
    else:
        floor = Floor(
            static_floor(start, allowance),
            allowance,
            "starting_balance",
            f"starting_balance {_money(start)}{minus}",
        )
    lock = rule.lock_cents(start)
    if lock is not None and floor.cents > lock:
        source = "lock_at" if rule.lock_at_starting_balance else "lock_at_amount"
        label = "lock_at starting_balance" if rule.lock_at_starting_balance else "lock_at_amount"
        floor = Floor(
            lock,
            allowance,
            source,
            f"{label} {_money(lock)} (capping {floor.explanation} = {_money(floor.cents)})",
        )
    if previous_floor_cents is not None and previous_floor_cents > floor.cents:
        floor = Floor(
            previous_floor_cents,
            allowance,
            "previous_floor",
            f"previous_floor {_money(previous_floor_cents)} (a floor never moves down; "
            f"{floor.explanation} = {_money(floor.cents)})",
        )
    return floor


def daily_loss_floor(rule: DailyLoss, *, anchor_cents: int, starting_balance_cents: int) -> Floor:
    """The `daily_loss` floor A - L (A from `daily_anchor` at the day's start)."""
    allowance = rule.allowance_cents(starting_balance_cents)
    return Floor(
        daily_floor(anchor_cents, allowance),
        allowance,
        "anchor",
        f"anchor {_money(anchor_cents)} - {_money(allowance)}",
    )


def drawdown_floor(peak_balance_cents: int, threshold: Decimal) -> Floor:
    """The legacy `drawdown` floor: peak_balance x (1 - threshold), rounded UP to the cent (the
    firm's favour); its allowance is what is left, peak - floor (so peak x threshold rounded
    down)."""
    exact = Fraction(peak_balance_cents) * (1 - Fraction(threshold))
    cents = math.ceil(exact)
    rounded = "" if cents == exact else ", rounded up to the cent"
    return Floor(
        cents,
        peak_balance_cents - cents,
        "peak_balance",
        f"peak_balance {_money(peak_balance_cents)} * (1 - {format_ratio(threshold)}){rounded}",
    )


def formula_line(equity_cents: int, floor: Floor) -> str:
    """The evidence's one-line formula of a loss rule, e.g.
    `equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00` (`>=` when not broken)."""
    relation = "<" if equity_cents < floor.cents else ">="
    return (
        f"equity {_money(equity_cents)} {relation} floor {_money(floor.cents)} = "
        f"{floor.explanation}"
    )


def risk_formula(largest_notional_cents: int | None, equity_cents: int, limit: Decimal) -> str:
    """The one-line formula of `risk_per_trade`, e.g.
    `notional 5000.01 > limit 0.0500 x equity 100000.00 = 5000.00`. The product is shown
    rounded down, which decides the comparison exactly as the unrounded one (whole cents)."""
    notional = 0 if largest_notional_cents is None else largest_notional_cents
    if largest_notional_cents is not None and equity_cents <= 0:
        return f"notional {_money(notional)} open with equity {_money(equity_cents)} <= 0.00"
    cap = math.floor(Fraction(limit) * equity_cents)
    relation = ">" if notional > cap else "<="
    return (
        f"notional {_money(notional)} {relation} limit {format_ratio(limit)} x equity "
        f"{_money(equity_cents)} = {_money(cap)}"
    )


# ---------------------------------------------------------------------------------------------
# Readings


@dataclass(frozen=True)
class Reading:
    """A rule reading: `{"value", "threshold", "status", "remaining", "floor"}` on the wire.

    `value` and `threshold` are exact (`value` None: unbounded, risk on equity at or below
    zero); `status` is the band of `value / threshold`; `remaining_cents` may be negative;
    `floor_cents` is None for `risk_per_trade`.
    """

    value: Fraction | None
    threshold: Fraction
    status: str
    remaining_cents: int
    floor_cents: int | None

    @property
    def used(self) -> Fraction | None:
        """`value / threshold`, the figure the bands apply to (None when unbounded)."""
        if self.value is None or self.threshold == 0:
            return None
        return self.value / self.threshold

    def to_wire(self) -> dict[str, Any]:
        return {
            "value": None if self.value is None else format_ratio(self.value),
            "threshold": format_ratio(self.threshold),
            "status": self.status,
            "remaining": format_cents(self.remaining_cents),
            "floor": None if self.floor_cents is None else format_cents(self.floor_cents),
        }


def loss_status(remaining_cents: int, allowance_cents: int) -> str:
    """The band of a loss rule from whole cents, as `loss_reading` decides it, without
    rationals (the per-event path): used = 1 - remaining / L, so used < 0.8 is 5 x remaining
    > L, used < 0.9 is 10 x remaining > L, and used <= 1 is remaining >= 0."""
    if allowance_cents <= 0:
        if remaining_cents < 0:
            return VIOLATION
        return DANGER if remaining_cents == 0 else SAFE
    if 5 * remaining_cents > allowance_cents:
        return SAFE
    if 10 * remaining_cents > allowance_cents:
        return WARNING
    return DANGER if remaining_cents >= 0 else VIOLATION


def loss_reading(
    equity_cents: int, floor_cents: int, allowance_cents: int, starting_balance_cents: int
) -> Reading:
    """The reading of a loss rule (`max_loss`, `daily_loss`).

    remaining = equity - floor; used = 1 - remaining / L; value = used x L / S = (L - remaining)
    / S; threshold = L / S (exact: an amount-based L need not give a terminating decimal);
    status = band of used (<0.8 safe, <0.9 warning, <=1 danger, >1 violation), so a violation
    is exactly equity < floor. All inputs are whole cents, so nothing rounds here. With L = 0
    (possible only when a tiny starting balance rounds the allowance away) used is taken as
    -inf, 1 or +inf by the sign of remaining, keeping that equivalence.
    """
    if starting_balance_cents <= 0:
        raise ValueError("a loss reading needs a positive starting balance")
    if allowance_cents < 0:
        raise ValueError("an allowance cannot be negative")
    remaining = equity_cents - floor_cents
    if allowance_cents == 0:
        status = VIOLATION if remaining < 0 else (DANGER if remaining == 0 else SAFE)
    else:
        status = band(1 - Fraction(remaining, allowance_cents), _ONE)
    return Reading(
        value=Fraction(allowance_cents - remaining, starting_balance_cents),
        threshold=Fraction(allowance_cents, starting_balance_cents),
        status=status,
        remaining_cents=remaining,
        floor_cents=floor_cents,
    )


def risk_reading(largest_notional_cents: int | None, equity_cents: int, limit: Decimal) -> Reading:
    """`risk_per_trade` (section 4 with threshold `limit`): value = largest open notional /
    equity (0 without open positions, None = unbounded when positions are open on equity at or
    below zero); remaining = limit x equity - largest notional, rounded DOWN to the cent;
    floor None."""
    if limit <= 0:
        raise ValueError("a risk limit must be positive")
    value = risk_per_trade(largest_notional_cents, equity_cents)
    notional = 0 if largest_notional_cents is None else largest_notional_cents
    return Reading(
        value=value,
        threshold=Fraction(limit),
        status=band(value, limit),
        remaining_cents=math.floor(Fraction(limit) * equity_cents - notional),
        floor_cents=None,
    )


def legacy_drawdown_reading(peak_cents: int, equity_cents: int, threshold: Decimal) -> Reading:
    """The legacy `drawdown` rule of section 4 read in the 4a shape: value = (peak - equity) /
    peak, status its band against `threshold`; floor = peak x (1 - threshold) rounded UP to the
    cent; remaining = equity - floor. As equity is whole cents, equity < floor exactly when
    value > threshold, so a violation is still exactly equity < floor."""
    if peak_cents <= 0:
        raise ValueError("a drawdown needs a positive peak balance")
    if threshold <= 0:
        raise ValueError("a drawdown threshold must be positive")
    floor = drawdown_floor(peak_cents, threshold)
    value = drawdown(peak_cents, equity_cents)
    return Reading(
        value=value,
        threshold=Fraction(threshold),
        status=band(value, threshold),
        remaining_cents=equity_cents - floor.cents,
        floor_cents=floor.cents,
    )


# ---------------------------------------------------------------------------------------------
# Payout gates


@dataclass(frozen=True)
class GateResult:
    """One payout gate's outcome. `code` is the refusal code the gate answers with when it
    fails; `figure` (the account's) and `required` are short strings a person can compare;
    `message` says it in a sentence. On the wire (payout eligibility): `{"gate", "passed",
    "value", "required", "message"}`."""

    gate: str
    passed: bool
    figure: str
    required: str
    code: str
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "value": self.figure,
            "required": self.required,
            "message": self.message,
        }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def min_trading_days(required_days: int, trading_days: Collection[date] | int) -> GateResult:
    """`min_trading_days`: the number of distinct days on which a position was opened or closed
    (the days, or their count) is at least `required_days`."""
    count = trading_days if isinstance(trading_days, int) else len(set(trading_days))
    return GateResult(
        gate=MIN_TRADING_DAYS,
        passed=count >= required_days,
        figure=str(count),
        required=str(required_days),
        code=MIN_TRADING_DAYS_NOT_MET,
        message=(
            f"{_plural(count, 'trading day')} (a position opened or closed), "
            f"at least {required_days} required"
        ),
    )


def min_winning_days(
    required_days: int, min_profit_cents: int, daily_pnl_cents: Mapping[date, int] | int
) -> GateResult:
    """`min_winning_days`: the number of days whose closed P&L is at least `min_profit_cents`
    (the days' P&L, or that number) is at least `required_days`."""
    if isinstance(daily_pnl_cents, int):
        count = daily_pnl_cents
    else:
        count = sum(1 for pnl in daily_pnl_cents.values() if pnl >= min_profit_cents)
    return GateResult(
        gate=MIN_WINNING_DAYS,
        passed=count >= required_days,
        figure=str(count),
        required=str(required_days),
        code=MIN_WINNING_DAYS_NOT_MET,
        message=(
            f"{_plural(count, 'day')} with closed P&L of at least {_money(min_profit_cents)}, "
            f"at least {required_days} required"
        ),
    )


def consistency(max_best_day_share: Decimal, daily_pnl_cents: Mapping[date, int]) -> GateResult:
    """`consistency`: best day's closed P&L <= `max_best_day_share` x total closed P&L, over
    every day given (the caller includes the current day). No profit (total <= 0) fails."""
    total = sum(daily_pnl_cents.values())
    if not daily_pnl_cents:
        return consistency_of(max_best_day_share, None, 0, total)
    best_day = min(daily_pnl_cents, key=lambda day: (-daily_pnl_cents[day], day))
    return consistency_of(max_best_day_share, best_day, daily_pnl_cents[best_day], total)


def consistency_of(
    max_best_day_share: Decimal, best_day: date | None, best_cents: int, total_cents: int
) -> GateResult:
    """`consistency` from its figures: the best day (None: no day with closed P&L) and its
    closed P&L, and the total closed P&L.

    The bound is shown as share x total rounded DOWN to the cent, which decides the comparison
    exactly as the unrounded product does (the best day is whole cents).
    """
    total = total_cents
    best = best_cents if best_day is not None else 0
    if best_day is not None:
        figure = f"best day {best_day.isoformat()} {_money(best)} of total {_money(total)}"
    else:
        figure = f"no closed P&L, total {_money(total)}"
    share_text = format_ratio(max_best_day_share)
    if total <= 0:
        return GateResult(
            gate=CONSISTENCY,
            passed=False,
            figure=figure,
            required="total closed P&L above 0.00",
            code=CONSISTENCY_NOT_MET,
            message=f"no profit to pay out: total closed P&L {_money(total)}",
        )
    cap = math.floor(Fraction(max_best_day_share) * total)
    passed = best <= Fraction(max_best_day_share) * total
    relation = "within" if passed else "above"
    return GateResult(
        gate=CONSISTENCY,
        passed=passed,
        figure=figure,
        required=f"best day at most {_money(cap)} ({share_text} x total)",
        code=CONSISTENCY_NOT_MET,
        message=(
            f"best day {_money(best)} is {relation} {share_text} x total {_money(total)} "
            f"= {_money(cap)}"
        ),
    )


def _format_elapsed(elapsed: timedelta) -> str:
    sign = "-" if elapsed < timedelta(0) else ""
    magnitude = -elapsed if sign else elapsed
    hours, rest = divmod(magnitude.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{_plural(magnitude.days, 'day')} {hours:02d}:{minutes:02d}:{seconds:02d}"
    if magnitude.microseconds:
        text += f".{magnitude.microseconds:06d}"
    return text


def payout_interval_days(required_days: int, since: datetime, requested_at: datetime) -> GateResult:
    """`payout_interval_days`: `requested_at - since` >= `required_days` x 24 h, `since` being
    the last completed withdrawal's `requested_at` or else the activation time. Both instants
    must be aware; a request before `since` has a negative interval and fails."""
    for name, moment in (("since", since), ("requested_at", requested_at)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime")
    elapsed = requested_at - since
    figure = _format_elapsed(elapsed)
    return GateResult(
        gate=PAYOUT_INTERVAL_DAYS,
        passed=elapsed >= timedelta(days=required_days),
        figure=figure,
        required=f"{_plural(required_days, 'day')} 00:00:00",
        code=PAYOUT_INTERVAL_NOT_MET,
        message=(
            f"{figure} since {format_ts(since)}, at least {_plural(required_days, 'day')} "
            f"of 24 h required"
        ),
    )


def check_gates(
    pack: RulePack,
    *,
    trading_days: Collection[date],
    daily_pnl_cents: Mapping[date, int],
    since: datetime,
    requested_at: datetime,
) -> list[GateResult]:
    """Every gate the pack has, in the contract's order (`GATES`): min_trading_days,
    min_winning_days, consistency, payout_interval_days. A request passes when all pass; the
    first failing one names the refusal."""
    results: list[GateResult] = []
    if pack.min_trading_days is not None:
        results.append(min_trading_days(pack.min_trading_days, trading_days))
    if pack.min_winning_days is not None:
        winning = pack.min_winning_days
        results.append(min_winning_days(winning.days, winning.min_profit_cents, daily_pnl_cents))
    if pack.consistency is not None:
        results.append(consistency(pack.consistency.max_best_day_share, daily_pnl_cents))
    if pack.payout_interval_days is not None:
        results.append(payout_interval_days(pack.payout_interval_days, since, requested_at))
    return results


# ---------------------------------------------------------------------------------------------
# Evidence


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, separators `,` and `:` (no spaces), non-ASCII kept as is,
    UTF-8. JSON values only (dict with str keys, list, str, int, float, bool, None): NaN and
    Infinity, `Decimal`s and other objects are refused (`ValueError` / `TypeError`)."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def evidence_digest(evidence: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of `evidence` without its `sha256` key."""
    body = {key: value for key, value in evidence.items() if key != "sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def with_digest(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `evidence` with `sha256` set to its digest (any old `sha256` replaced)."""
    body = {key: value for key, value in evidence.items() if key != "sha256"}
    return {**body, "sha256": evidence_digest(body)}


def verify_digest(evidence: Mapping[str, Any]) -> bool:
    """Whether `evidence["sha256"]` is the digest of the rest."""
    return evidence.get("sha256") == evidence_digest(evidence)


def evidence_state(
    *,
    equity_cents: int,
    balance_cents: int,
    peak_balance_cents: int,
    day: date,
    day_anchor_cents: int | None,
    floor_cents: int | None,
) -> dict[str, Any]:
    """The `before` / `after` object of the evidence: `equity`, `balance`, `peak_balance`,
    `day` (ISO date), `day_anchor`, `floor` (money strings; null where the tier has none)."""
    return {
        "equity": format_cents(equity_cents),
        "balance": format_cents(balance_cents),
        "peak_balance": format_cents(peak_balance_cents),
        "day": day.isoformat(),
        "day_anchor": None if day_anchor_cents is None else format_cents(day_anchor_cents),
        "floor": None if floor_cents is None else format_cents(floor_cents),
    }


def make_evidence(
    *,
    trigger: Mapping[str, Any],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    terms: Mapping[str, Any],
    formula: str,
) -> dict[str, Any]:
    """The evidence of `rules.violation-detected`, its `sha256` included. `trigger` is the
    trade event as received (parsed JSON), `terms` the rule's wire terms (`rule.to_wire()`)."""
    return with_digest(
        {
            "trigger": dict(trigger),
            "before": dict(before),
            "after": dict(after),
            "terms": dict(terms),
            "formula": formula,
        }
    )
