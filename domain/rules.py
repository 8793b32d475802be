"""Trading rules of a funded account (CONTRACT section 4), computed exactly.

Values are `Fraction`s of integer cents, thresholds `Decimal`s; the band of `value / threshold`
is decided on exact rationals, so "exactly 0.9 of the threshold" is `danger`, never a rounding
accident. Decimal strings are only made for display (`format_ratio`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

from domain.money import format_ratio

__all__ = [
    "DANGER",
    "DRAWDOWN",
    "RISK_PER_TRADE",
    "RULES",
    "SAFE",
    "STATUSES",
    "VIOLATION",
    "WARNING",
    "RuleReading",
    "band",
    "band_of",
    "drawdown",
    "drawdown_band",
    "risk_per_trade",
    "risk_per_trade_band",
]

DRAWDOWN = "drawdown"
RISK_PER_TRADE = "risk_per_trade"
# Order matters: when both break on one event, the closure names drawdown.
RULES: tuple[str, ...] = (DRAWDOWN, RISK_PER_TRADE)

SAFE = "safe"
WARNING = "warning"
DANGER = "danger"
VIOLATION = "violation"
STATUSES: tuple[str, ...] = (SAFE, WARNING, DANGER, VIOLATION)

_WARNING_FROM = Fraction(8, 10)
_DANGER_FROM = Fraction(9, 10)
_VIOLATION_ABOVE = Fraction(1)


def band(value: Fraction | None, threshold: Decimal) -> str:
    """Status of a rule from `value / threshold`: [0, .8) safe, [.8, .9) warning,
    [.9, 1] danger, above 1 violation. `None` is an unbounded value (a violation)."""
    if value is None:
        return VIOLATION
    ratio = value / Fraction(threshold)
    if ratio < _WARNING_FROM:
        return SAFE
    if ratio < _DANGER_FROM:
        return WARNING
    if ratio <= _VIOLATION_ABOVE:
        return DANGER
    return VIOLATION


@lru_cache(maxsize=256)
def _ratio_of(threshold: Decimal) -> tuple[int, int]:
    """`threshold` as an exact integer ratio (a tier has a handful of thresholds)."""
    return threshold.as_integer_ratio()


def band_of(numerator: int, denominator: int, threshold: Decimal) -> str:
    """`band(Fraction(numerator, denominator), threshold)` in integers alone (the per-event
    path: no rational is built). With ratio = n / d / (p / q) and d, p > 0, `ratio < 8/10` is
    `10 n q < 8 d p`, and likewise for 9/10 and 1."""
    p, q = _ratio_of(threshold)
    if denominator <= 0 or p <= 0:
        return band(Fraction(numerator, denominator), threshold)
    scaled = 10 * numerator * q
    unit = denominator * p
    if scaled < 8 * unit:
        return SAFE
    if scaled < 9 * unit:
        return WARNING
    if scaled <= 10 * unit:
        return DANGER
    return VIOLATION


def drawdown_band(peak_balance_cents: int, current_balance_cents: int, limit: Decimal) -> str:
    """`band(drawdown(peak, current), limit)` without rationals."""
    return band_of(peak_balance_cents - current_balance_cents, peak_balance_cents, limit)


def risk_per_trade_band(
    max_notional_cents: int | None, current_balance_cents: int, limit: Decimal
) -> str:
    """`band(risk_per_trade(max notional, current), limit)` without rationals."""
    if max_notional_cents is None:
        return band_of(0, 1, limit)
    if current_balance_cents <= 0:
        return VIOLATION
    return band_of(max_notional_cents, current_balance_cents, limit)


def drawdown(peak_balance_cents: int, current_balance_cents: int) -> Fraction:
    """`(peak - current) / peak`; the peak is never below the (positive) starting balance."""
    return Fraction(peak_balance_cents - current_balance_cents, peak_balance_cents)


def risk_per_trade(max_notional_cents: int | None, current_balance_cents: int) -> Fraction | None:
    """`max notional / current`: 0 without open positions; `None` (unbounded, a violation)
    when positions are open on a balance of zero or less."""
    if max_notional_cents is None:
        return Fraction(0)
    if current_balance_cents <= 0:
        return None
    return Fraction(max_notional_cents, current_balance_cents)


@dataclass(frozen=True)
class RuleReading:
    rule: str
    value: Fraction | None
    threshold: Decimal
    status: str

    @property
    def value_text(self) -> str | None:
        """4-decimal display of the value; None when unbounded (balance at or below zero)."""
        return None if self.value is None else format_ratio(self.value)

    @property
    def threshold_text(self) -> str:
        return format_ratio(self.threshold)

    def to_wire(self) -> dict[str, Any]:
        return {"value": self.value_text, "threshold": self.threshold_text, "status": self.status}
