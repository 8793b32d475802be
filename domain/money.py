"""Money and numbers (CONTRACT section 2).

Money is integer cents inside (`*_cents`), a two-decimal string on the wire. Ratios are
`Decimal` (exact, from decimal strings) and values computed from them are `Fraction`s, so the
rule bands compare exactly. Rounding is named and always favours the firm.

A float is never trusted for money: if one reaches this module anyway (a JSON parser not told
to use `Decimal`), its shortest repr is what the sender wrote, and that text is parsed instead.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = [
    "MAX_ABS_CENTS",
    "InvalidAmount",
    "InvalidNumber",
    "format_cents",
    "format_decimal",
    "format_ratio",
    "json_number",
    "parse_money",
    "parse_price",
    "parse_quantity",
    "parse_ratio",
    "split_round_down",
]

# NUMERIC(18,2) holds |amount| < 10^16 cents; anything at or past it is refused at the edge.
MAX_ABS_CENTS = 10**16
# Ratios live in NUMERIC(9,4): at most 4 decimals, below 10^5.
RATIO_DECIMALS = 4
MAX_RATIO = Decimal(100_000)
_RATIO_QUANTUM = Decimal("0.0001")
# Quantities and prices are not money; they only need to be sane positive decimals.
_MAX_NUMBER_ADJUSTED = 18
_MIN_NUMBER_EXPONENT = -18
_MAX_TEXT = 40

_MONEY_RE = re.compile(r"-?([0-9]+)(?:\.([0-9]{1,2}))?")
_EXPONENT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+")
_UNSIGNED_DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class InvalidNumber(ValueError):
    """A value that is not an acceptable number; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidAmount(InvalidNumber):
    """A value that is not valid money (CONTRACT section 2)."""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _short(number: Decimal) -> str:
    text = str(number)
    return text if len(text) <= 40 else text[:37] + "..."


def _decimal_from_number(value: object, error: type[InvalidNumber]) -> Decimal | None:
    """Decimal for int/Decimal/float inputs; None when `value` is not a number at all."""
    if isinstance(value, bool):
        # bool is an int subclass; `true` is never an amount.
        raise error(f"a boolean is not a number: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def json_number(text: str) -> Decimal:
    """The Decimal of a JSON number's text (the codec's `parse_float`; money strings with an
    exponent too).

    A plain number keeps its digits as written, so "250.500" still has three decimals. An
    exponent form writes no decimals out: it is reduced, exactly, to its value's digits
    ("1.50e1" is 15, "1e2" is Decimal("1E+2"), "1.2345e2" is 123.45), so what counts is how many
    decimals its value has. Refused (InvalidNumber) when Decimal cannot hold the exponent at
    all; any other absurd exponent (1e400, 1e-400) is left for the range checks, which are
    cheap whatever the exponent.
    """
    mantissa, marker, exponent_text = text.replace("E", "e").partition("e")
    try:
        if not marker:
            return Decimal(text)
        whole, _, frac = mantissa.partition(".")
        sign = "-" if whole.startswith("-") else ""
        digits = (whole.lstrip("-") + frac).lstrip("0")
        kept = digits.rstrip("0")
        if not kept:
            return Decimal(f"{sign}0")
        # int() of at most 4300 digits; past that (or past Decimal's exponents) it is refused.
        exponent = int(exponent_text) - len(frac) + (len(digits) - len(kept))
        return Decimal(f"{sign}{kept}E{exponent}")
    except (InvalidOperation, ValueError):
        raise InvalidNumber(f"number out of range: {_describe(text)}") from None


def parse_money(value: object) -> int:
    """Cents from a wire amount: int, Decimal, a string like "250.50", or a float's repr.

    An exponent form ("1e2", "1.5E1", 1E-2 as a number) is an amount when its value has at
    most two decimals. Refused: bool, None, empty or padded strings, more than two decimals,
    NaN, Infinity and magnitudes beyond NUMERIC(18,2) (however large the exponent).
    """
    if isinstance(value, str):
        return _money_from_text(value)
    number = _decimal_from_number(value, InvalidAmount)
    if number is None:
        raise InvalidAmount(
            f"not an amount: expected a decimal string or number: {_describe(value)}"
        )
    return _money_from_decimal(number)


def _money_from_text(text: str) -> int:
    if text == "":
        raise InvalidAmount("empty amount")
    if len(text) > _MAX_TEXT:
        raise InvalidAmount("amount text too long")
    match = _MONEY_RE.fullmatch(text)
    if match is None:
        if _EXPONENT_RE.fullmatch(text) is not None:
            try:
                number = json_number(text)
            except InvalidNumber:
                raise InvalidAmount(f"amount out of range: {_describe(text)}") from None
            return _money_from_decimal(number)
        raise InvalidAmount(f"not a decimal amount with at most two decimals: {_describe(text)}")
    whole, frac = match.group(1), match.group(2) or ""
    cents = int(whole) * 100 + int(frac.ljust(2, "0"))
    if text.startswith("-"):
        cents = -cents
    return _bounded(cents)


def _money_from_decimal(number: Decimal) -> int:
    if not number.is_finite():
        raise InvalidAmount(f"not a finite amount: {_short(number)}")
    sign, digits, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - finite decimals have int exponents
        raise InvalidAmount(f"not a finite amount: {_short(number)}")
    # The range first: it bounds the exponent, so 10 ** (exponent + 2) below stays small.
    if number.adjusted() >= 14:
        raise InvalidAmount(f"amount out of range: {_short(number)}")
    if exponent < -2:
        raise InvalidAmount(f"more than two decimals: {_short(number)}")
    magnitude = int("".join(str(d) for d in digits) or "0") * 10 ** (exponent + 2)
    return _bounded(-magnitude if sign else magnitude)


def _bounded(cents: int) -> int:
    if abs(cents) >= MAX_ABS_CENTS:
        raise InvalidAmount("amount out of range: |amount| must be below 10^14")
    return cents


def format_cents(cents: int) -> str:
    """Wire form of cents: 125050 -> "1250.50", -90000 -> "-900.00", 0 -> "0.00"."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def split_round_down(split: Decimal, profit_cents: int) -> int:
    """The trader's share of `profit_cents`, rounded toward -inf (in the firm's favour)."""
    return math.floor(Fraction(split) * profit_cents)


def parse_ratio(value: object) -> Decimal:
    """A non-negative finite ratio with at most 4 significant decimals (NUMERIC(9,4)).

    Trailing zeros are fine ("0.800000" is 0.8); "0.12345" is refused rather than rounded,
    so a tier's terms survive every round trip exactly.
    """
    if isinstance(value, str):
        if len(value) > _MAX_TEXT or _UNSIGNED_DECIMAL_RE.fullmatch(value) is None:
            raise InvalidNumber(f"not a non-negative decimal ratio: {_describe(value)}")
        number = Decimal(value)
    else:
        maybe = _decimal_from_number(value, InvalidNumber)
        if maybe is None:
            raise InvalidNumber(
                f"not a ratio: expected a decimal string or number: {_describe(value)}"
            )
        number = maybe
    if not number.is_finite():
        raise InvalidNumber(f"not a finite ratio: {_short(number)}")
    if number < 0:
        raise InvalidNumber(f"negative ratio: {_short(number)}")
    if number >= MAX_RATIO:
        raise InvalidNumber(f"ratio out of range: {_short(number)}")
    quantized = number.quantize(_RATIO_QUANTUM)
    if quantized != number:
        raise InvalidNumber(f"more than {RATIO_DECIMALS} decimals: {_short(number)}")
    # One representation per ratio ("0.80" and "0.8" are both Decimal("0.8000")).
    return quantized


def format_ratio(value: Decimal | Fraction) -> str:
    """Four decimals, e.g. "0.8000". Values finer than that round half-even, for display only."""
    scaled = Fraction(value) * 10**RATIO_DECIMALS
    units = round(scaled)  # Fraction.__round__ is exact half-even
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**RATIO_DECIMALS)
    return f"{sign}{whole}.{frac:0{RATIO_DECIMALS}d}"


def _parse_positive(value: object, what: str) -> Decimal:
    if isinstance(value, bool):
        raise InvalidNumber(f"{what} must be a positive decimal, got a boolean")
    if isinstance(value, str):
        if len(value) > _MAX_TEXT or _UNSIGNED_DECIMAL_RE.fullmatch(value) is None:
            raise InvalidNumber(f"{what} must be a positive decimal, got {_describe(value)}")
        number = Decimal(value)
    else:
        maybe = _decimal_from_number(value, InvalidNumber)
        if maybe is None:
            raise InvalidNumber(f"{what} must be a positive decimal, got {_describe(value)}")
        number = maybe
    if not number.is_finite() or number <= 0:
        raise InvalidNumber(f"{what} must be a positive decimal, got {_short(number)}")
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - finite decimals have int exponents
        raise InvalidNumber(f"{what} must be a positive decimal, got {_short(number)}")
    if number.adjusted() >= _MAX_NUMBER_ADJUSTED or exponent < _MIN_NUMBER_EXPONENT:
        raise InvalidNumber(f"{what} out of range: {_short(number)}")
    return number


def parse_quantity(value: object) -> Decimal:
    """A position's quantity: a positive decimal (kept as given, not money)."""
    return _parse_positive(value, "quantity")


def parse_price(value: object) -> Decimal:
    """A position's price: a positive decimal (kept as given, not money)."""
    return _parse_positive(value, "price")


def format_decimal(value: Decimal) -> str:
    """Plain positional text of a decimal (never exponent notation): Decimal('1E+3') -> '1000'."""
    return format(value, "f")
