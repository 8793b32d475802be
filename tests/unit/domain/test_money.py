import time
from decimal import Decimal
from fractions import Fraction

import pytest

from app.codec import WireError, loads_object
from domain.money import (
    InvalidAmount,
    InvalidNumber,
    format_cents,
    format_decimal,
    format_ratio,
    json_number,
    parse_money,
    parse_price,
    parse_quantity,
    parse_ratio,
    split_round_down,
)


@pytest.mark.parametrize(
    ("value", "cents"),
    [
        ("250", 25000),
        ("250.5", 25050),
        ("250.50", 25050),
        ("-900.00", -90000),
        ("0", 0),
        ("-0.00", 0),
        ("0.01", 1),
        ("007.10", 710),
        (250, 25000),
        (-3, -300),
        (Decimal("250.50"), 25050),
        (Decimal("100.0"), 10000),
        (Decimal("-0.05"), -5),
        (250.5, 25050),
        (0.1, 10),
        (1250.75, 125075),
        ("99999999999999.99", 10**16 - 1),
    ],
)
def test_valid_money(value: object, cents: int) -> None:
    result = parse_money(value)
    assert result == cents
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [
        "",
        " 250.00",
        "250.00 ",
        "1.005",
        "250.500",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "+5",
        ".5",
        "5.",
        "1,000.00",
        "--1",
        "١٢٣",  # non-ASCII digits
        "100000000000000.00",  # 10^16 cents: beyond NUMERIC(18,2)
        "9" * 41,
        None,
        True,
        False,
        [],
        {"amount": "1.00"},
        b"1.00",
        10**14,
        -(10**14),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("1.005"),
        Decimal("1" + "0" * 30),
        float("nan"),
        float("inf"),
        1e16,
        1.005,
        1e-5,
    ],
)
def test_invalid_money(value: object) -> None:
    with pytest.raises(InvalidAmount) as caught:
        parse_money(value)
    assert caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_invalid_money_reasons_say_why() -> None:
    with pytest.raises(InvalidAmount, match="more than two decimals"):
        parse_money(Decimal("1.005"))
    with pytest.raises(InvalidAmount, match="at most two decimals"):
        parse_money("1.005")
    with pytest.raises(InvalidAmount, match="range"):
        parse_money(Decimal("1E+400"))
    with pytest.raises(InvalidAmount, match="finite"):
        parse_money(Decimal("NaN"))
    with pytest.raises(InvalidAmount, match="boolean"):
        parse_money(True)
    with pytest.raises(InvalidAmount, match="empty"):
        parse_money("")
    with pytest.raises(InvalidAmount, match="range"):
        parse_money(10**14)


# Exponent forms (CONTRACT section 2): valid when the value has at most two decimals, as a
# string or as a JSON number (through the codec, as every input is read). None: refused.
EXPONENT_CASES: list[tuple[str, int | None]] = [
    ("1e2", 100_00),
    ("1E2", 100_00),
    ("1e+2", 100_00),
    ("1.5e1", 15_00),
    ("1.50e1", 15_00),
    ("1.5000e1", 15_00),  # trailing zeros of an exponent form are not decimals
    ("1E-2", 1),
    ("25e-1", 2_50),
    ("1.2345e2", 123_45),
    ("100e-4", 1),
    ("-9e2", -900_00),
    ("0e0", 0),
    ("0e999", 0),
    ("2.5e3", 2500_00),
    ("9.9999999999999e13", 10**16 - 100),  # the largest whole amount below the bound
    ("9.99999999999999e13", 10**16 - 10),
    ("1e-3", None),  # three decimals
    ("1.23456e2", None),
    ("1.005e0", None),
    ("1e14", None),  # beyond NUMERIC(18,2) as this system bounds it (below 10^14)
    ("-1e14", None),
    ("1e400", None),
    ("1e-400", None),
    ("1e999999999999999999", None),  # absurd exponents: refused at once, never computed
    ("1e-999999999999999999", None),
]


@pytest.mark.parametrize(("text", "cents"), EXPONENT_CASES)
def test_exponent_amounts_as_strings(text: str, cents: int | None) -> None:
    if cents is None:
        with pytest.raises(InvalidAmount):
            parse_money(text)
    else:
        assert parse_money(text) == cents


@pytest.mark.parametrize(("text", "cents"), EXPONENT_CASES)
def test_exponent_amounts_as_json_numbers(text: str, cents: int | None) -> None:
    value = loads_object('{"amount": ' + text + "}")["amount"]
    if cents is None:
        with pytest.raises(InvalidAmount):
            parse_money(value)
    else:
        assert parse_money(value) == cents


@pytest.mark.parametrize(
    "text",
    [
        "1e" + "9" * 30,  # an exponent no Decimal holds
        "1e-" + "9" * 30,
        "1e" + "9" * 100_000,  # past int()'s digit limit too
    ],
)
def test_exponents_past_any_decimal_are_refused_fast(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidAmount):
        parse_money(text)  # over 40 characters or out of range: an amount error either way
    with pytest.raises(WireError, match="out of range"):
        loads_object('{"amount": ' + text + "}")
    assert time.perf_counter() - started < 0.5


def test_plain_numbers_keep_their_written_decimals() -> None:
    # Only an exponent form is read by its value: a plain 250.500 still has three decimals.
    assert json_number("250.500") == Decimal("250.500")
    with pytest.raises(InvalidAmount, match="more than two decimals"):
        parse_money(loads_object('{"amount": 250.500}')["amount"])
    assert json_number("1.50e1") == Decimal(15)
    assert json_number("1e2").as_tuple().exponent == 2


@pytest.mark.parametrize(
    ("cents", "text"),
    [(125050, "1250.50"), (-90000, "-900.00"), (0, "0.00"), (1, "0.01"), (-5, "-0.05")],
)
def test_format_cents(cents: int, text: str) -> None:
    assert format_cents(cents) == text
    assert parse_money(text) == cents


@pytest.mark.parametrize(
    ("split", "profit", "share"),
    [
        (Decimal("0.80"), 60_000_00, 48_000_00),
        (Decimal("0.80"), 1, 0),  # 0.8 cent owed: rounds down to nothing
        (Decimal("0.85"), 333, 283),  # 283.05 -> 283
        (Decimal("0.80"), -1, -1),  # a loss rounds toward -inf, never in the trader's favour
        (Decimal("0.8333"), 100, 83),
        (Decimal("1"), 12345, 12345),
        (Decimal("0.80"), 0, 0),
    ],
)
def test_split_rounds_in_the_firms_favour(split: Decimal, profit: int, share: int) -> None:
    assert split_round_down(split, profit) == share


@pytest.mark.parametrize(
    ("value", "ratio"),
    [
        ("0.80", Decimal("0.8")),
        ("0.8", Decimal("0.8")),
        ("0.800000", Decimal("0.8")),
        ("1", Decimal(1)),
        ("0.0001", Decimal("0.0001")),
        (Decimal("0.15"), Decimal("0.15")),
        (0, Decimal(0)),
        (0.05, Decimal("0.05")),
        (Decimal("1E+1"), Decimal(10)),
    ],
)
def test_parse_ratio(value: object, ratio: Decimal) -> None:
    assert parse_ratio(value) == ratio
    assert format_ratio(parse_ratio(value)) == format_ratio(ratio)


@pytest.mark.parametrize(
    "value",
    [
        "-0.1",
        "NaN",
        "inf",
        "",
        " 0.1",
        "1e-1",
        "0.12345",
        None,
        True,
        Decimal("-1"),
        Decimal("NaN"),
        float("inf"),
        "100000",
        [0.1],
    ],
)
def test_invalid_ratio(value: object) -> None:
    with pytest.raises(InvalidNumber):
        parse_ratio(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.8"), "0.8000"),
        (Decimal("0.05"), "0.0500"),
        (Decimal(1), "1.0000"),
        (Fraction(1, 3), "0.3333"),
        (Fraction(2, 3), "0.6667"),
        (Fraction(1, 20000), "0.0000"),  # 0.00005: half-even rounds to the even 0.0000
        (Fraction(3, 20000), "0.0002"),  # 0.00015 -> 0.0002
        (Fraction(-1, 4), "-0.2500"),
    ],
)
def test_format_ratio(value: Decimal | Fraction, text: str) -> None:
    assert format_ratio(value) == text


@pytest.mark.parametrize("parse", [parse_quantity, parse_price])
def test_quantity_and_price(parse: object) -> None:
    assert callable(parse)
    assert parse("2.5") == Decimal("2.5")
    assert parse("1.0850") == Decimal("1.0850")
    assert parse(3) == Decimal(3)
    assert parse(Decimal("0.001")) == Decimal("0.001")
    assert parse(1.25) == Decimal("1.25")
    for bad in (
        "0",
        "-1",
        "",
        "abc",
        "1e3",
        None,
        True,
        Decimal("NaN"),
        0,
        "1" * 41,
        Decimal("1E+30"),
        Decimal("1E-30"),
    ):
        with pytest.raises(InvalidNumber, match=r"positive decimal|out of range"):
            parse(bad)


def test_format_decimal_never_uses_exponents() -> None:
    assert format_decimal(Decimal("1E+3")) == "1000"
    assert format_decimal(Decimal("1.0850")) == "1.0850"
