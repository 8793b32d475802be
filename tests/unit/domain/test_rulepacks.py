"""Rule packs (CONTRACT section 4a): terms, floors, readings, payout gates and evidence.

Expected figures are worked out by hand in the comments; S is the starting balance, L the
allowance.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.money import parse_money
from domain.rulepacks import (
    CONSISTENCY_NOT_MET,
    GATES,
    MIN_TRADING_DAYS_NOT_MET,
    MIN_WINNING_DAYS_NOT_MET,
    PAYOUT_INTERVAL_NOT_MET,
    Consistency,
    DailyLoss,
    InvalidRules,
    MaxLoss,
    MinWinningDays,
    RiskPerTrade,
    RulePack,
    allowance_cents,
    check_gates,
    consistency,
    daily_anchor,
    daily_floor,
    daily_loss_floor,
    drawdown_floor,
    evidence_digest,
    evidence_state,
    formula_line,
    legacy_drawdown_reading,
    loss_reading,
    make_evidence,
    max_loss_floor,
    min_trading_days,
    min_winning_days,
    parse_rules,
    payout_interval_days,
    ratchet_floor,
    risk_formula,
    risk_reading,
    static_floor,
    trailing_eod_floor,
    trailing_floor,
    verify_digest,
    with_digest,
)
from domain.rules import DANGER, SAFE, VIOLATION, WARNING
from domain.tradingdays import DayClock

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def c(text: str) -> int:
    """Cents of a money string: c("100000.00") == 10_000_000."""
    return parse_money(text)


S = c("100000.00")

CONTRACT_RULES: dict[str, Any] = {
    "max_loss": {"mode": "static", "limit": "0.10"},
    "daily_loss": {
        "limit": "0.05",
        "anchor": "balance",
        "reset_tz": "Europe/Prague",
        "reset_at": "00:00",
        "action": "close",
    },
    "risk_per_trade": {"limit": "0.05"},
    "consistency": {"max_best_day_share": "0.50"},
    "min_trading_days": 4,
    "min_winning_days": {"days": 5, "min_profit": "150.00"},
    "payout_interval_days": 14,
}

CONTRACT_PACK = RulePack(
    max_loss=MaxLoss(mode="static", limit=Decimal("0.10")),
    daily_loss=DailyLoss(
        anchor="balance",
        action="close",
        limit=Decimal("0.05"),
        clock=DayClock("Europe/Prague", "00:00"),
    ),
    risk_per_trade=RiskPerTrade(Decimal("0.05")),
    consistency=Consistency(Decimal("0.5")),
    min_trading_days=4,
    min_winning_days=MinWinningDays(days=5, min_profit_cents=c("150.00")),
    payout_interval_days=14,
)


# --- parsing ------------------------------------------------------------------------------


def test_the_contracts_example_parses_and_round_trips() -> None:
    pack = parse_rules(CONTRACT_RULES, starting_balance_cents=S)
    assert pack == CONTRACT_PACK
    assert pack.to_wire() == {
        "max_loss": {"mode": "static", "limit": "0.1000"},
        "daily_loss": {
            "limit": "0.0500",
            "anchor": "balance",
            "reset_tz": "Europe/Prague",
            "reset_at": "00:00",
            "action": "close",
        },
        "risk_per_trade": {"limit": "0.0500"},
        "consistency": {"max_best_day_share": "0.5000"},
        "min_trading_days": 4,
        "min_winning_days": {"days": 5, "min_profit": "150.00"},
        "payout_interval_days": 14,
    }
    assert parse_rules(pack.to_wire()) == pack
    assert RulePack.from_wire(json.loads(json.dumps(pack.to_wire()))) == pack
    assert pack.clock == DayClock("Europe/Prague", "00:00")


def test_the_example_read_from_json_text_with_decimal_numbers_parses_the_same() -> None:
    text = json.dumps(CONTRACT_RULES).replace('"0.10"', "0.10").replace('"150.00"', "150.00")
    assert parse_rules(json.loads(text, parse_float=Decimal)) == CONTRACT_PACK


@pytest.mark.parametrize(
    "rules",
    [
        {"max_loss": {"mode": "trailing", "amount": "3000.00", "lock_at": "starting_balance"}},
        {"max_loss": {"mode": "trailing_eod", "limit": "0.06", "lock_at_amount": "100100.00"}},
        {"max_loss": {"mode": "trailing", "limit": "1"}},
        {"daily_loss": {"amount": "2500.00", "anchor": "max", "action": "lock"}},
        {"min_trading_days": 0, "payout_interval_days": 0},
        {},
    ],
)
def test_other_packs_round_trip(rules: dict[str, Any]) -> None:
    pack = parse_rules(rules, starting_balance_cents=S)
    assert parse_rules(pack.to_wire()) == pack


def test_daily_loss_defaults_to_utc_midnight_and_a_pack_without_it_counts_utc_days() -> None:
    pack = parse_rules({"daily_loss": {"limit": "0.05", "anchor": "equity", "action": "lock"}})
    assert pack.daily_loss is not None
    assert pack.daily_loss.clock == DayClock("UTC", "00:00")
    assert pack.daily_loss.to_wire()["reset_tz"] == "UTC"
    assert parse_rules({"min_trading_days": 3}).clock == DayClock()


_DROP = object()  # a term left out


def _terms(base: dict[str, Any], terms: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **terms}
    return {key: value for key, value in merged.items() if value is not _DROP}


def _daily(**terms: Any) -> dict[str, Any]:
    base = {"limit": "0.05", "anchor": "balance", "action": "close"}
    return {"daily_loss": _terms(base, terms)}


def _max(**terms: Any) -> dict[str, Any]:
    return {"max_loss": _terms({"mode": "trailing", "limit": "0.10"}, terms)}


# (rules, code, text the message must contain: the offending key's path)
REFUSALS: list[tuple[object, str, str]] = [
    ([], "invalid_field", "rules must be an object"),
    (None, "invalid_field", "rules must be an object"),
    ({"max_drawdown": "0.10"}, "unknown_field", "rules.max_drawdown"),
    ({"Max_Loss": {}}, "unknown_field", "rules.Max_Loss"),
    (_max(lock_at_balance="1.00"), "unknown_field", "rules.max_loss.lock_at_balance"),
    (_daily(reset_time="00:00"), "unknown_field", "rules.daily_loss.reset_time"),
    ({"risk_per_trade": {"amount": "100.00"}}, "unknown_field", "rules.risk_per_trade.amount"),
    (
        {"consistency": {"max_best_day_share": "0.5", "days": 3}},
        "unknown_field",
        "rules.consistency.days",
    ),
    (
        {"min_winning_days": {"days": 5, "min_profit": "1.00", "of": 7}},
        "unknown_field",
        "rules.min_winning_days.of",
    ),
    ({"max_loss": "0.10"}, "invalid_field", "rules.max_loss must be an object"),
    ({"daily_loss": None}, "invalid_field", "rules.daily_loss must be an object"),
    # exactly one of limit / amount
    (_max(amount="5000.00"), "invalid_field", "rules.max_loss.limit and rules.max_loss.amount"),
    (_max(limit=_DROP), "missing_field", "rules.max_loss.limit or rules.max_loss.amount"),
    (_daily(amount="50.00"), "invalid_field", "rules.daily_loss.limit and rules.daily_loss.amount"),
    (_daily(limit=_DROP), "missing_field", "rules.daily_loss.limit or rules.daily_loss.amount"),
    # ratios in (0, 1]
    (_max(limit="0"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit="0.0000"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit="1.0001"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit="-0.10"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit="0.12345"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit="ten percent"), "invalid_field", "rules.max_loss.limit"),
    (_max(limit=True), "invalid_field", "rules.max_loss.limit"),
    (_max(limit=None), "invalid_field", "rules.max_loss.limit"),
    (_daily(limit="1.5"), "invalid_field", "rules.daily_loss.limit"),
    ({"risk_per_trade": {"limit": "0"}}, "invalid_field", "rules.risk_per_trade.limit"),
    ({"risk_per_trade": {"limit": False}}, "invalid_field", "rules.risk_per_trade.limit"),
    ({"risk_per_trade": {}}, "missing_field", "rules.risk_per_trade.limit"),
    (
        {"consistency": {"max_best_day_share": "1.01"}},
        "invalid_field",
        "rules.consistency.max_best_day_share",
    ),
    (
        {"consistency": {"max_best_day_share": "0"}},
        "invalid_field",
        "rules.consistency.max_best_day_share",
    ),
    # money above zero
    (_max(limit=_DROP, amount="0.00"), "invalid_field", "rules.max_loss.amount"),
    (_max(limit=_DROP, amount="-5000.00"), "invalid_field", "rules.max_loss.amount"),
    (_max(limit=_DROP, amount="5000.001"), "invalid_field", "rules.max_loss.amount"),
    (_max(limit=_DROP, amount=True), "invalid_field", "rules.max_loss.amount"),
    (_daily(limit=_DROP, amount="0"), "invalid_field", "rules.daily_loss.amount"),
    (_max(lock_at_amount="0.00"), "invalid_field", "rules.max_loss.lock_at_amount"),
    (
        {"min_winning_days": {"days": 5, "min_profit": "0.00"}},
        "invalid_field",
        "rules.min_winning_days.min_profit",
    ),
    (
        {"min_winning_days": {"days": 5, "min_profit": "-150.00"}},
        "invalid_field",
        "rules.min_winning_days.min_profit",
    ),
    # choices
    (_max(mode="rolling"), "invalid_field", "rules.max_loss.mode"),
    (_max(mode=_DROP), "missing_field", "rules.max_loss.mode"),
    (_max(mode=1), "invalid_field", "rules.max_loss.mode"),
    (_daily(anchor="open"), "invalid_field", "rules.daily_loss.anchor"),
    (_daily(anchor=_DROP), "missing_field", "rules.daily_loss.anchor"),
    (_daily(action="warn"), "invalid_field", "rules.daily_loss.action"),
    (_daily(action=_DROP), "missing_field", "rules.daily_loss.action"),
    (_max(lock_at="equity"), "invalid_field", "rules.max_loss.lock_at"),
    (_max(lock_at=True), "invalid_field", "rules.max_loss.lock_at"),
    # locks
    (_max(mode="static", lock_at="starting_balance"), "invalid_field", "rules.max_loss.lock_at"),
    (_max(mode="static", lock_at_amount="1.00"), "invalid_field", "rules.max_loss.lock_at_amount"),
    (
        _max(lock_at="starting_balance", lock_at_amount="100100.00"),
        "invalid_field",
        "rules.max_loss.lock_at and rules.max_loss.lock_at_amount",
    ),
    # the clock
    (_daily(reset_tz="Mars/Olympus_Mons"), "invalid_field", "rules.daily_loss.reset_tz"),
    (_daily(reset_tz="localtime"), "invalid_field", "rules.daily_loss.reset_tz"),
    (_daily(reset_tz=1), "invalid_field", "rules.daily_loss.reset_tz"),
    (_daily(reset_tz=None), "invalid_field", "rules.daily_loss.reset_tz"),
    (_daily(reset_at="24:00"), "invalid_field", "rules.daily_loss.reset_at"),
    (_daily(reset_at="7:00"), "invalid_field", "rules.daily_loss.reset_at"),
    (_daily(reset_at="00:00:00"), "invalid_field", "rules.daily_loss.reset_at"),
    # day counts: whole numbers, not negative, not booleans
    ({"min_trading_days": Decimal("2.5")}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": 4.0}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": "4"}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": True}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": -1}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": 10**30}, "invalid_field", "rules.min_trading_days"),
    ({"min_trading_days": None}, "invalid_field", "rules.min_trading_days"),
    ({"payout_interval_days": -14}, "invalid_field", "rules.payout_interval_days"),
    ({"payout_interval_days": False}, "invalid_field", "rules.payout_interval_days"),
    ({"payout_interval_days": 14.5}, "invalid_field", "rules.payout_interval_days"),
    (
        {"min_winning_days": {"days": -1, "min_profit": "1.00"}},
        "invalid_field",
        "rules.min_winning_days.days",
    ),
    (
        {"min_winning_days": {"days": True, "min_profit": "1.00"}},
        "invalid_field",
        "rules.min_winning_days.days",
    ),
    (
        {"min_winning_days": {"min_profit": "1.00"}},
        "missing_field",
        "rules.min_winning_days.days",
    ),
]


@pytest.mark.parametrize(("rules", "code", "names"), REFUSALS)
def test_bad_terms_are_refused_naming_the_key(rules: object, code: str, names: str) -> None:
    with pytest.raises(InvalidRules) as info:
        parse_rules(rules)
    assert isinstance(info.value, ValueError)
    assert info.value.code == code
    assert names in str(info.value)
    assert str(info.value) == f"{code}: {info.value.detail}"


def test_an_unknown_key_is_named_even_when_it_is_not_plain_text() -> None:
    with pytest.raises(InvalidRules, match=r"rules\.'max loss\\n'"):
        parse_rules({"max loss\n": {}})


# Terms that only make sense against the starting balance (100,000.00).
AGAINST_S = [
    (_max(limit=_DROP, amount="100000.01"), "rules.max_loss.amount must not exceed"),
    (_daily(limit=_DROP, amount="100000.01"), "rules.daily_loss.amount must not exceed"),
    # S - L = 90,000.00: a lock below it would start the floor under the static one.
    (_max(lock_at_amount="89999.99"), "rules.max_loss.lock_at_amount must not be below"),
]


@pytest.mark.parametrize(("rules", "names"), AGAINST_S)
def test_terms_are_checked_against_the_starting_balance_when_given(
    rules: dict[str, Any], names: str
) -> None:
    parse_rules(rules)  # fine on their own
    with pytest.raises(InvalidRules, match=names):
        parse_rules(rules, starting_balance_cents=S)


def test_an_allowance_that_rounds_to_nothing_is_refused_against_the_starting_balance() -> None:
    # 0.0001 x 50.00 = 0.005 -> 0.00.
    with pytest.raises(InvalidRules, match=r"rules\.max_loss\.limit gives an allowance below"):
        parse_rules(_max(limit="0.0001"), starting_balance_cents=c("50.00"))
    # 0.0001 x 100,000.00 = 10.00; a lock exactly at the starting floor S - L is fine.
    parse_rules(_max(limit="0.0001", lock_at_amount="99990.00"), starting_balance_cents=S)


def test_the_dataclasses_refuse_invalid_terms_too() -> None:
    with pytest.raises(InvalidRules, match=r"rules\.max_loss\.limit and"):
        MaxLoss(mode="static", limit=Decimal("0.1"), amount_cents=100)
    with pytest.raises(InvalidRules, match=r"rules\.daily_loss\.anchor"):
        DailyLoss(anchor="peak", action="close", limit=Decimal("0.05"))
    with pytest.raises(InvalidRules, match=r"rules\.payout_interval_days"):
        RulePack(payout_interval_days=-1)


# --- allowances and floors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit_or_amount", "start", "allowance"),
    [
        (Decimal("0.10"), "100000.00", "10000.00"),
        (Decimal("0.05"), "100000.00", "5000.00"),
        (Decimal("1"), "100000.00", "100000.00"),
        (c("3000.00"), "100000.00", "3000.00"),  # an amount is itself
        (Decimal("0.0333"), "50000.00", "1665.00"),  # exact
        # 0.0333 x 100000.01 = 3330.000333: rounds DOWN to 3330.00.
        (Decimal("0.0333"), "100000.01", "3330.00"),
        # 0.1 x 0.09 = 0.009: rounds down to nothing.
        (Decimal("0.1"), "0.09", "0.00"),
    ],
)
def test_allowance(limit_or_amount: Decimal | int, start: str, allowance: str) -> None:
    assert allowance_cents(limit_or_amount, c(start)) == c(allowance)


def test_allowance_refuses_a_boolean() -> None:
    with pytest.raises(TypeError):
        allowance_cents(True, S)


def test_a_non_integer_allowance_rounds_the_floor_up_in_the_firms_favour() -> None:
    # S = 100,000.01, limit 0.0333: exact floor S x 0.9667 = 96670.009667; L = 3330.00 (down),
    # so the floor S - L = 96670.01 (up).
    start = c("100000.01")
    rule = MaxLoss(mode="static", limit=Decimal("0.0333"))
    floor = max_loss_floor(rule, starting_balance_cents=start)
    assert floor.cents == c("96670.01") == static_floor(start, c("3330.00"))
    assert Fraction(floor.cents) > Fraction(start) * (1 - Fraction(Decimal("0.0333")))
    at_floor = loss_reading(c("96670.01"), floor.cents, floor.allowance_cents, start)
    assert (at_floor.status, at_floor.remaining_cents) == (DANGER, 0)
    below = loss_reading(c("96670.00"), floor.cents, floor.allowance_cents, start)
    assert (below.status, below.remaining_cents) == (VIOLATION, -1)


def test_static_floor() -> None:
    assert static_floor(S, c("10000.00")) == c("90000.00")


# Trailing, S = 100,000.00, L = 10,000.00.
@pytest.mark.parametrize(
    ("highest", "no_lock", "lock_at_start", "lock_at_100100"),
    [
        ("100000.00", "90000.00", "90000.00", "90000.00"),
        ("104000.00", "94000.00", "94000.00", "94000.00"),
        ("110000.00", "100000.00", "100000.00", "100000.00"),  # reaches the S lock exactly
        ("110000.01", "100000.01", "100000.00", "100000.01"),  # the S lock stops it
        ("110100.00", "100100.00", "100000.00", "100100.00"),
        ("112000.00", "102000.00", "100000.00", "100100.00"),  # both locks hold
        ("150000.00", "140000.00", "100000.00", "100100.00"),
    ],
)
def test_trailing_floor_and_its_locks(
    highest: str, no_lock: str, lock_at_start: str, lock_at_100100: str
) -> None:
    allowance = c("10000.00")
    assert trailing_floor(c(highest), allowance) == c(no_lock)
    assert trailing_floor(c(highest), allowance, S) == c(lock_at_start)
    assert trailing_floor(c(highest), allowance, c("100100.00")) == c(lock_at_100100)
    for rule, expected in [
        (MaxLoss(mode="trailing", limit=Decimal("0.10")), no_lock),
        (
            MaxLoss(mode="trailing", limit=Decimal("0.10"), lock_at_starting_balance=True),
            lock_at_start,
        ),
        (
            MaxLoss(
                mode="trailing", amount_cents=c("10000.00"), lock_at_amount_cents=c("100100.00")
            ),
            lock_at_100100,
        ),
    ]:
        built = max_loss_floor(rule, starting_balance_cents=S, highest_equity_cents=c(highest))
        assert built.cents == c(expected)


def test_trailing_eod_floor_from_closed_day_balances() -> None:
    allowance = c("10000.00")
    assert trailing_eod_floor(S, allowance, None) == c("90000.00")  # no day closed yet
    assert trailing_eod_floor(S, allowance, c("99000.00")) == c("90000.00")  # S - L is higher
    # Closing balances 101,000.00, 99,500.00, 104,250.25, 103,000.00: the highest is 104,250.25.
    closings = [c("101000.00"), c("99500.00"), c("104250.25"), c("103000.00")]
    assert trailing_eod_floor(S, allowance, max(closings)) == c("94250.25")
    assert trailing_eod_floor(S, allowance, c("112000.00")) == c("102000.00")
    assert trailing_eod_floor(S, allowance, c("112000.00"), S) == c("100000.00")
    assert trailing_eod_floor(S, allowance, c("112000.00"), c("100100.00")) == c("100100.00")


def test_a_floor_never_moves_down() -> None:
    assert ratchet_floor(None, c("90000.00")) == c("90000.00")
    assert ratchet_floor(c("94000.00"), c("93000.00")) == c("94000.00")
    assert ratchet_floor(c("94000.00"), c("95000.00")) == c("95000.00")


@pytest.mark.parametrize(
    ("anchor", "balance", "equity", "anchor_value", "floor"),
    [
        ("balance", "100000.00", "98500.00", "100000.00", "95000.00"),
        ("equity", "100000.00", "98500.00", "98500.00", "93500.00"),
        ("max", "100000.00", "98500.00", "100000.00", "95000.00"),
        ("balance", "99000.00", "101200.50", "99000.00", "94000.00"),
        ("equity", "99000.00", "101200.50", "101200.50", "96200.50"),
        ("max", "99000.00", "101200.50", "101200.50", "96200.50"),
    ],
)
def test_daily_anchor_and_floor(
    anchor: str, balance: str, equity: str, anchor_value: str, floor: str
) -> None:
    # limit 0.05 of S = 100,000.00: L = 5,000.00 whatever the anchor.
    a = daily_anchor(anchor, c(balance), c(equity))
    assert a == c(anchor_value)
    assert daily_floor(a, c("5000.00")) == c(floor)
    rule = DailyLoss(anchor=anchor, action="close", limit=Decimal("0.05"))
    assert daily_loss_floor(rule, anchor_cents=a, starting_balance_cents=S).cents == c(floor)


def test_an_amount_based_daily_limit() -> None:
    rule = DailyLoss(anchor="balance", action="lock", amount_cents=c("2500.00"))
    floor = daily_loss_floor(rule, anchor_cents=c("100000.00"), starting_balance_cents=S)
    assert (floor.cents, floor.allowance_cents) == (c("97500.00"), c("2500.00"))


def test_daily_anchor_refuses_an_unknown_anchor() -> None:
    with pytest.raises(ValueError, match="anchor"):
        daily_anchor("open", 1, 2)


# --- readings -------------------------------------------------------------------------------


# Static, S = 100,000.00, limit 0.10: L = 10,000.00, floor 90,000.00.
@pytest.mark.parametrize(
    ("loss", "status"),
    [
        ("0.00", SAFE),
        ("7999.99", SAFE),
        ("8000.00", WARNING),  # exactly 0.8 of the allowance
        ("8000.01", WARNING),
        ("8999.99", WARNING),
        ("9000.00", DANGER),  # exactly 0.9
        ("9000.01", DANGER),
        ("10000.00", DANGER),  # exactly 1.0: equity at the floor is no violation
        ("10000.01", VIOLATION),  # one cent below the floor
    ],
)
def test_loss_reading_bands(loss: str, status: str) -> None:
    equity = S - c(loss)
    reading = loss_reading(equity, c("90000.00"), c("10000.00"), S)
    assert reading.status == status
    assert reading.remaining_cents == equity - c("90000.00")
    assert reading.value == Fraction(c(loss), S)
    assert reading.used == Fraction(c(loss), c("10000.00"))


def test_loss_reading_on_the_wire() -> None:
    reading = loss_reading(c("92000.00"), c("90000.00"), c("10000.00"), S)
    assert reading.to_wire() == {
        "value": "0.0800",
        "threshold": "0.1000",
        "status": WARNING,
        "remaining": "2000.00",
        "floor": "90000.00",
    }
    # Above the starting balance the loss is negative, and so is the value.
    above = loss_reading(c("105000.00"), c("90000.00"), c("10000.00"), S)
    assert above.to_wire()["value"] == "-0.0500"
    assert above.status == SAFE


def test_an_amount_whose_threshold_is_no_terminating_decimal_still_bands_exactly() -> None:
    # S = 30,000.00, amount 1,000.00: threshold 1/30 ("0.0333"), floor 29,000.00.
    start, allowance = c("30000.00"), c("1000.00")
    floor = static_floor(start, allowance)
    assert floor == c("29000.00")
    half = loss_reading(c("29500.00"), floor, allowance, start)
    assert half.threshold == Fraction(1, 30)
    assert half.value == Fraction(1, 60)
    assert half.to_wire() == {
        "value": "0.0167",
        "threshold": "0.0333",
        "status": SAFE,
        "remaining": "500.00",
        "floor": "29000.00",
    }
    # used exactly 0.8 (remaining 200.00) is warning, 0.9 (100.00) danger.
    assert loss_reading(c("29200.00"), floor, allowance, start).status == WARNING
    assert loss_reading(c("29200.01"), floor, allowance, start).status == SAFE
    assert loss_reading(c("29100.00"), floor, allowance, start).status == DANGER
    assert loss_reading(c("29000.00"), floor, allowance, start).status == DANGER
    assert loss_reading(c("28999.99"), floor, allowance, start).status == VIOLATION


def test_an_amount_based_max_loss_reading() -> None:
    # S = 50,000.00, amount 3,000.00: floor 47,000.00; at the floor used = 1 and value = 0.06.
    start = c("50000.00")
    rule = MaxLoss(mode="static", amount_cents=c("3000.00"))
    floor = max_loss_floor(rule, starting_balance_cents=start)
    reading = loss_reading(c("47000.00"), floor.cents, floor.allowance_cents, start)
    assert reading.to_wire() == {
        "value": "0.0600",
        "threshold": "0.0600",
        "status": DANGER,
        "remaining": "0.00",
        "floor": "47000.00",
    }


def test_a_trailing_reading_follows_the_floor_to_its_lock() -> None:
    rule = MaxLoss(mode="trailing", limit=Decimal("0.10"), lock_at_starting_balance=True)
    floor = max_loss_floor(rule, starting_balance_cents=S, highest_equity_cents=c("112000.00"))
    assert floor.cents == S
    reading = loss_reading(c("99999.99"), floor.cents, floor.allowance_cents, S)
    assert (reading.status, reading.remaining_cents) == (VIOLATION, -1)
    assert loss_reading(c("100000.00"), floor.cents, floor.allowance_cents, S).status == DANGER


def test_a_zero_allowance_keeps_violation_exactly_below_the_floor() -> None:
    assert loss_reading(100, 100, 0, 100).status == DANGER
    assert loss_reading(101, 100, 0, 100).status == SAFE
    assert loss_reading(99, 100, 0, 100).status == VIOLATION


# risk_per_trade, limit 0.05.
@pytest.mark.parametrize(
    ("notional", "equity", "value", "status", "remaining"),
    [
        (None, "100000.00", "0.0000", SAFE, "5000.00"),
        ("3999.99", "100000.00", "0.0400", SAFE, "1000.01"),
        ("4000.00", "100000.00", "0.0400", WARNING, "1000.00"),
        ("4500.00", "100000.00", "0.0450", DANGER, "500.00"),
        ("5000.00", "100000.00", "0.0500", DANGER, "0.00"),
        ("5000.01", "100000.00", "0.0500", VIOLATION, "-0.01"),
        # 0.05 x 100,000.01 = 5,000.0005: remaining rounds DOWN.
        (None, "100000.01", "0.0000", SAFE, "5000.00"),
        ("1000.00", "100000.01", "0.0100", SAFE, "4000.00"),
        # 0.05 x 99,999.99 = 4,999.9995; 4,999.9995 - 5,000.00 = -0.0005 -> -0.01.
        ("5000.00", "99999.99", "0.0500", VIOLATION, "-0.01"),
    ],
)
def test_risk_reading(
    notional: str | None, equity: str, value: str, status: str, remaining: str
) -> None:
    reading = risk_reading(None if notional is None else c(notional), c(equity), Decimal("0.05"))
    assert reading.to_wire() == {
        "value": value,
        "threshold": "0.0500",
        "status": status,
        "remaining": remaining,
        "floor": None,
    }


def test_risk_on_equity_at_or_below_zero_is_unbounded() -> None:
    reading = risk_reading(c("10.00"), c("-5.00"), Decimal("0.05"))
    assert reading.value is None and reading.used is None
    assert reading.to_wire()["value"] is None
    assert reading.status == VIOLATION


@pytest.mark.parametrize(
    ("peak", "equity", "threshold", "floor", "remaining", "value", "status"),
    [
        ("100000.00", "95000.00", "0.10", "90000.00", "5000.00", "0.0500", SAFE),
        ("100000.00", "90000.00", "0.10", "90000.00", "0.00", "0.1000", DANGER),
        ("100000.00", "89999.99", "0.10", "90000.00", "-0.01", "0.1000", VIOLATION),
        # 100,000.01 x 0.9 = 90,000.009 -> floor 90,000.01 (UP).
        ("100000.01", "90000.01", "0.10", "90000.01", "0.00", "0.1000", DANGER),
        ("100000.01", "90000.00", "0.10", "90000.01", "-0.01", "0.1000", VIOLATION),
        # 100,000.03 x 0.85 = 85,000.0255 -> 85,000.03.
        ("100000.03", "92000.00", "0.15", "85000.03", "6999.97", "0.0800", SAFE),
    ],
)
def test_legacy_drawdown_reading(
    peak: str, equity: str, threshold: str, floor: str, remaining: str, value: str, status: str
) -> None:
    reading = legacy_drawdown_reading(c(peak), c(equity), Decimal(threshold))
    assert reading.to_wire() == {
        "value": value,
        "threshold": f"{Decimal(threshold):.4f}",
        "status": status,
        "remaining": remaining,
        "floor": floor,
    }


# --- formula lines --------------------------------------------------------------------------


def test_the_daily_formula_reads_like_the_contracts_example() -> None:
    rule = DailyLoss(anchor="balance", action="close", limit=Decimal("0.05"))
    floor = daily_loss_floor(rule, anchor_cents=c("100000.00"), starting_balance_cents=S)
    assert (
        formula_line(c("94900.00"), floor)
        == "equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00"
    )
    assert formula_line(c("95000.00"), floor).startswith("equity 95000.00 >= floor 95000.00")


STATIC = MaxLoss(mode="static", limit=Decimal("0.10"))
TRAILING = MaxLoss(mode="trailing", limit=Decimal("0.10"))
TRAILING_AT_S = MaxLoss(mode="trailing", limit=Decimal("0.10"), lock_at_starting_balance=True)
TRAILING_AT_AMOUNT = MaxLoss(
    mode="trailing", limit=Decimal("0.10"), lock_at_amount_cents=c("100100.00")
)
EOD = MaxLoss(mode="trailing_eod", limit=Decimal("0.10"))
EOD_AT_S = MaxLoss(mode="trailing_eod", limit=Decimal("0.10"), lock_at_starting_balance=True)


@pytest.mark.parametrize(
    ("rule", "state", "equity", "source", "line"),
    [
        (
            STATIC,
            {},
            "89999.99",
            "starting_balance",
            "equity 89999.99 < floor 90000.00 = starting_balance 100000.00 - 10000.00",
        ),
        (
            TRAILING,
            {"highest_equity_cents": c("104000.00")},
            "93999.99",
            "highest_equity",
            "equity 93999.99 < floor 94000.00 = highest_equity 104000.00 - 10000.00",
        ),
        (
            TRAILING,
            {},
            "89999.99",
            "highest_equity",
            "equity 89999.99 < floor 90000.00 = highest_equity 100000.00 - 10000.00",
        ),
        (
            TRAILING_AT_S,
            {"highest_equity_cents": c("112000.00")},
            "99999.99",
            "lock_at",
            "equity 99999.99 < floor 100000.00 = lock_at starting_balance 100000.00 "
            "(capping highest_equity 112000.00 - 10000.00 = 102000.00)",
        ),
        (
            TRAILING_AT_AMOUNT,
            {"highest_equity_cents": c("112000.00")},
            "100099.99",
            "lock_at_amount",
            "equity 100099.99 < floor 100100.00 = lock_at_amount 100100.00 "
            "(capping highest_equity 112000.00 - 10000.00 = 102000.00)",
        ),
        (
            EOD,
            {"highest_closed_day_balance_cents": c("104000.00"), "closed_day": date(2026, 11, 24)},
            "93999.99",
            "closed_day_balance",
            "equity 93999.99 < floor 94000.00 = closed_day_balance 104000.00 (2026-11-24) "
            "- 10000.00",
        ),
        (
            EOD,
            {"highest_closed_day_balance_cents": c("98000.00")},
            "89999.99",
            "starting_balance",
            "equity 89999.99 < floor 90000.00 = starting_balance 100000.00 - 10000.00",
        ),
        (
            EOD_AT_S,
            {"highest_closed_day_balance_cents": c("112000.00")},
            "99999.99",
            "lock_at",
            "equity 99999.99 < floor 100000.00 = lock_at starting_balance 100000.00 "
            "(capping closed_day_balance 112000.00 - 10000.00 = 102000.00)",
        ),
        (
            TRAILING,
            {"highest_equity_cents": c("104000.00"), "previous_floor_cents": c("95000.00")},
            "94999.99",
            "previous_floor",
            "equity 94999.99 < floor 95000.00 = previous_floor 95000.00 (a floor never moves "
            "down; highest_equity 104000.00 - 10000.00 = 94000.00)",
        ),
    ],
)
def test_max_loss_formula_lines_say_where_the_floor_came_from(
    rule: MaxLoss, state: dict[str, Any], equity: str, source: str, line: str
) -> None:
    floor = max_loss_floor(rule, starting_balance_cents=S, **state)
    assert floor.source == source
    assert formula_line(c(equity), floor) == line


def test_drawdown_and_risk_formula_lines() -> None:
    floor = drawdown_floor(c("100000.01"), Decimal("0.10"))
    assert formula_line(c("90000.00"), floor) == (
        "equity 90000.00 < floor 90000.01 = peak_balance 100000.01 * (1 - 0.1000), "
        "rounded up to the cent"
    )
    exact = drawdown_floor(S, Decimal("0.10"))
    assert exact.explanation == "peak_balance 100000.00 * (1 - 0.1000)"
    assert (exact.cents, exact.allowance_cents) == (c("90000.00"), c("10000.00"))
    assert risk_formula(c("5000.01"), S, Decimal("0.05")) == (
        "notional 5000.01 > limit 0.0500 x equity 100000.00 = 5000.00"
    )
    assert risk_formula(None, S, Decimal("0.05")) == (
        "notional 0.00 <= limit 0.0500 x equity 100000.00 = 5000.00"
    )
    assert risk_formula(c("1.00"), 0, Decimal("0.05")) == (
        "notional 1.00 open with equity 0.00 <= 0.00"
    )


# --- payout gates ---------------------------------------------------------------------------

D = [date(2026, 11, 20) + timedelta(days=n) for n in range(10)]


@pytest.mark.parametrize(
    ("required", "days", "passed", "figure"),
    [
        (4, [D[0], D[1], D[2]], False, "3"),
        (4, [D[0], D[1], D[2], D[5]], True, "4"),
        (4, [D[0], D[0], D[1], D[1], D[2]], False, "3"),  # a day counts once
        (0, [], True, "0"),
    ],
)
def test_min_trading_days(required: int, days: list[date], passed: bool, figure: str) -> None:
    result = min_trading_days(required, days)
    assert (result.gate, result.passed, result.figure, result.required) == (
        "min_trading_days",
        passed,
        figure,
        str(required),
    )
    assert result.code == MIN_TRADING_DAYS_NOT_MET


def test_min_winning_days() -> None:
    pnl = {
        D[0]: c("150.00"),  # exactly min_profit: a winning day
        D[1]: c("149.99"),
        D[2]: c("500.00"),
        D[3]: c("-200.00"),
        D[4]: c("150.01"),
        D[5]: c("1000.00"),
        D[6]: c("300.00"),
    }
    result = min_winning_days(5, c("150.00"), pnl)
    assert (result.passed, result.figure, result.required) == (True, "5", "5")
    assert result.code == MIN_WINNING_DAYS_NOT_MET
    del pnl[D[6]]
    fewer = min_winning_days(5, c("150.00"), pnl)
    assert (fewer.passed, fewer.figure) == (False, "4")
    assert "at least 150.00" in fewer.message


@pytest.mark.parametrize(
    ("share", "pnl", "passed", "figure", "required"),
    [
        # no profit fails, whatever the best day
        ("0.50", {}, False, "no closed P&L, total 0.00", "total closed P&L above 0.00"),
        (
            "0.50",
            {D[0]: c("-100.00"), D[1]: c("100.00")},
            False,
            "best day 2026-11-21 100.00 of total 0.00",
            "total closed P&L above 0.00",
        ),
        (
            "1",
            {D[0]: c("-300.00"), D[1]: c("-100.00")},
            False,
            "best day 2026-11-21 -100.00 of total -400.00",
            "total closed P&L above 0.00",
        ),
        # a single profitable day is all of the total
        (
            "0.50",
            {D[0]: c("1000.00")},
            False,
            "best day 2026-11-20 1000.00 of total 1000.00",
            "best day at most 500.00 (0.5000 x total)",
        ),
        (
            "1",
            {D[0]: c("1000.00")},
            True,
            "best day 2026-11-20 1000.00 of total 1000.00",
            "best day at most 1000.00 (1.0000 x total)",
        ),
        # exactly the share passes
        (
            "0.50",
            {D[0]: c("500.00"), D[1]: c("300.00"), D[2]: c("200.00")},
            True,
            "best day 2026-11-20 500.00 of total 1000.00",
            "best day at most 500.00 (0.5000 x total)",
        ),
        # 0.5 x 1000.01 = 500.005: 500.01 is above it
        (
            "0.50",
            {D[0]: c("500.01"), D[1]: c("500.00")},
            False,
            "best day 2026-11-20 500.01 of total 1000.01",
            "best day at most 500.00 (0.5000 x total)",
        ),
        # 0.3333 x 100.01 = 33.333333: 33.33 passes, 33.34 does not
        (
            "0.3333",
            {D[0]: c("33.33"), D[1]: c("33.34"), D[2]: c("33.34"), D[3]: c("0.00")},
            False,
            "best day 2026-11-21 33.34 of total 100.01",
            "best day at most 33.33 (0.3333 x total)",
        ),
        (
            "0.3333",
            {D[0]: c("33.33"), D[1]: c("33.33"), D[2]: c("33.35")},
            False,
            "best day 2026-11-22 33.35 of total 100.01",
            "best day at most 33.33 (0.3333 x total)",
        ),
        (
            "0.3334",
            {D[0]: c("33.33"), D[1]: c("33.34"), D[2]: c("33.34")},
            True,
            "best day 2026-11-21 33.34 of total 100.01",  # a tie names the earlier day
            "best day at most 33.34 (0.3334 x total)",
        ),
    ],
)
def test_consistency(
    share: str, pnl: dict[date, int], passed: bool, figure: str, required: str
) -> None:
    result = consistency(Decimal(share), pnl)
    assert (result.gate, result.passed, result.figure, result.required) == (
        "consistency",
        passed,
        figure,
        required,
    )
    assert result.code == CONSISTENCY_NOT_MET


@pytest.mark.parametrize(
    ("since", "requested", "passed", "figure"),
    [
        ("2026-11-01T10:00:00", "2026-11-15T10:00:00", True, "14 days 00:00:00"),
        ("2026-11-01T10:00:00", "2026-11-15T09:59:59.999999", False, "13 days 23:59:59.999999"),
        ("2026-11-01T10:00:00", "2026-12-01T08:30:00", True, "29 days 22:30:00"),
        # 24-hour days: a DST change in between (Prague, 10-25) changes nothing.
        ("2026-10-20T10:00:00", "2026-11-03T10:00:00", True, "14 days 00:00:00"),
        ("2026-11-02T10:00:00", "2026-11-01T09:00:00", False, "-1 day 01:00:00"),
    ],
)
def test_payout_interval(since: str, requested: str, passed: bool, figure: str) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    result = payout_interval_days(14, at(since), at(requested))
    assert (result.gate, result.passed, result.figure, result.required) == (
        "payout_interval_days",
        passed,
        figure,
        "14 days 00:00:00",
    )
    assert result.code == PAYOUT_INTERVAL_NOT_MET
    assert "since 2026-" in result.message


def test_payout_interval_refuses_naive_instants() -> None:
    with pytest.raises(ValueError, match="aware"):
        payout_interval_days(1, datetime(2026, 11, 1), datetime(2026, 11, 3, tzinfo=UTC))


def test_check_gates_runs_the_packs_gates_in_the_contracts_order() -> None:
    since = datetime(2026, 11, 1, 10, tzinfo=UTC)
    pnl = {D[0]: c("400.00"), D[1]: c("200.00"), D[2]: c("150.00"), D[3]: c("-50.00")}
    results = check_gates(
        CONTRACT_PACK,
        trading_days=[D[0], D[1], D[2], D[3]],
        daily_pnl_cents=pnl,
        since=since,
        requested_at=since + timedelta(days=14),
    )
    assert [r.gate for r in results] == list(GATES)
    assert [r.passed for r in results] == [True, False, False, True]
    first_refusal = next(r for r in results if not r.passed)
    assert first_refusal.code == MIN_WINNING_DAYS_NOT_MET
    assert results[2].figure == "best day 2026-11-20 400.00 of total 700.00"
    assert results[2].to_wire() == {
        "gate": "consistency",
        "passed": False,
        "value": "best day 2026-11-20 400.00 of total 700.00",
        "required": "best day at most 350.00 (0.5000 x total)",
        "message": results[2].message,
    }
    no_gates = RulePack(max_loss=STATIC)
    assert (
        check_gates(no_gates, trading_days=[], daily_pnl_cents={}, since=since, requested_at=since)
        == []
    )


# --- evidence -------------------------------------------------------------------------------

EVIDENCE: dict[str, Any] = {
    "trigger": {
        "event_id": "t-3",
        "type": "position_closed",
        "account_id": "fa_1",
        "position_id": "p-1",
        "realized_pnl": "-5100.00",
        "occurred_at": "2026-11-24T09:15:00Z",
    },
    "before": {
        "equity": "100000.00",
        "balance": "100000.00",
        "peak_balance": "100000.00",
        "day": "2026-11-24",
        "day_anchor": "100000.00",
        "floor": "95000.00",
    },
    "after": {
        "equity": "94900.00",
        "balance": "94900.00",
        "peak_balance": "100000.00",
        "day": "2026-11-24",
        "day_anchor": "100000.00",
        "floor": "95000.00",
    },
    "terms": {
        "limit": "0.0500",
        "anchor": "balance",
        "reset_tz": "Europe/Prague",
        "reset_at": "00:00",
        "action": "close",
    },
    "formula": "equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00",
}


def test_the_digest_is_sha256_of_the_canonical_json_without_sha256() -> None:
    independent = hashlib.sha256(
        json.dumps(EVIDENCE, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8"
        )
    ).hexdigest()
    assert evidence_digest(EVIDENCE) == independent
    assert evidence_digest({**EVIDENCE, "sha256": "whatever"}) == independent
    reordered = {key: EVIDENCE[key] for key in reversed(list(EVIDENCE))}
    reordered["trigger"] = dict(reversed(list(EVIDENCE["trigger"].items())))
    assert list(reordered) != list(EVIDENCE)
    assert evidence_digest(reordered) == independent
    changed = {**EVIDENCE, "formula": EVIDENCE["formula"].replace("94900", "94900.01")}
    assert evidence_digest(changed) != independent


def test_the_canonical_form_has_no_spaces_sorted_keys_and_raw_utf8() -> None:
    # Written out by hand: keys sorted at every level, no spaces, "č" as its two UTF-8 bytes.
    evidence = {"b": [1, {"y": True, "x": None}], "a": "Praha č", "sha256": "ignored"}
    canonical = '{"a":"Praha č","b":[1,{"x":null,"y":true}]}'.encode()
    assert b"\xc4\x8d" in canonical
    assert evidence_digest(evidence) == hashlib.sha256(canonical).hexdigest()


def test_with_digest_and_verify() -> None:
    sealed = with_digest(EVIDENCE)
    assert sealed["sha256"] == evidence_digest(EVIDENCE)
    assert {k: v for k, v in sealed.items() if k != "sha256"} == EVIDENCE
    assert verify_digest(sealed)
    assert not verify_digest({**sealed, "formula": "tampered"})
    assert with_digest(sealed) == sealed  # an old digest is replaced, not hashed
    assert "sha256" not in EVIDENCE


def test_make_evidence_builds_the_contracts_shape() -> None:
    before = evidence_state(
        equity_cents=S,
        balance_cents=S,
        peak_balance_cents=S,
        day=date(2026, 11, 24),
        day_anchor_cents=S,
        floor_cents=c("95000.00"),
    )
    after = evidence_state(
        equity_cents=c("94900.00"),
        balance_cents=c("94900.00"),
        peak_balance_cents=S,
        day=date(2026, 11, 24),
        day_anchor_cents=S,
        floor_cents=c("95000.00"),
    )
    assert CONTRACT_PACK.daily_loss is not None
    evidence = make_evidence(
        trigger=EVIDENCE["trigger"],
        before=before,
        after=after,
        terms=CONTRACT_PACK.daily_loss.to_wire(),
        formula=EVIDENCE["formula"],
    )
    assert {k: v for k, v in evidence.items() if k != "sha256"} == EVIDENCE
    assert evidence["sha256"] == evidence_digest(EVIDENCE)


def test_the_digest_refuses_what_json_cannot_say() -> None:
    with pytest.raises(ValueError):
        evidence_digest({"x": float("nan")})
    with pytest.raises(TypeError):
        evidence_digest({"x": Decimal("1.00")})


# --- properties -----------------------------------------------------------------------------

cents = st.integers(min_value=-(10**12), max_value=10**12)
positive_cents = st.integers(min_value=1, max_value=10**12)
ratios = st.integers(min_value=1, max_value=10_000).map(lambda n: Decimal(n) / 10_000)


@PROPERTY_SETTINGS
@given(
    start=positive_cents,
    allowance=positive_cents,
    highest_extra=st.integers(0, 10**12),
    closed=st.none() | cents,
    lock_extra=st.integers(-(10**6), 10**12),
)
def test_floors_never_exceed_their_lock(
    start: int, allowance: int, highest_extra: int, closed: int | None, lock_extra: int
) -> None:
    lock = start + lock_extra
    highest = start + highest_extra
    trailing = trailing_floor(highest, allowance, lock)
    eod = trailing_eod_floor(start, allowance, closed, lock)
    assert trailing <= lock and eod <= lock
    assert trailing == min(highest - allowance, lock)
    uncapped = max([start - allowance] + ([] if closed is None else [closed - allowance]))
    assert eod == min(uncapped, lock)


@PROPERTY_SETTINGS
@given(
    start=positive_cents,
    limit=ratios,
    mode=st.sampled_from(["static", "trailing", "trailing_eod"]),
    lock=st.sampled_from(["none", "start", "amount"]),
    lock_extra=st.integers(0, 10**9),
    highest=st.none() | cents,
    closed=st.none() | cents,
    previous=st.none() | cents,
)
def test_max_loss_floor_agrees_with_the_plain_functions(
    start: int,
    limit: Decimal,
    mode: str,
    lock: str,
    lock_extra: int,
    highest: int | None,
    closed: int | None,
    previous: int | None,
) -> None:
    allowance = allowance_cents(limit, start)
    lock_amount = start - allowance + lock_extra
    rule = MaxLoss(
        mode=mode,
        limit=limit,
        lock_at_starting_balance=mode != "static" and lock == "start",
        lock_at_amount_cents=lock_amount if mode != "static" and lock == "amount" else None,
    )
    lock_cents = rule.lock_cents(start)
    floor = max_loss_floor(
        rule,
        starting_balance_cents=start,
        highest_equity_cents=highest,
        highest_closed_day_balance_cents=closed,
        previous_floor_cents=previous,
    )
    if mode == "static":
        plain = static_floor(start, allowance)
    elif mode == "trailing":
        plain = trailing_floor(max(start, highest or start), allowance, lock_cents)
    else:
        plain = trailing_eod_floor(start, allowance, closed, lock_cents)
    assert floor.cents == ratchet_floor(previous, plain)
    assert floor.allowance_cents == allowance
    assert formula_line(0, floor).startswith(f"equity 0.00 {'<' if 0 < floor.cents else '>='}")


@PROPERTY_SETTINGS
@given(equity=cents, floor=cents, allowance=st.integers(0, 10**12), start=positive_cents)
def test_loss_readings_are_exact(equity: int, floor: int, allowance: int, start: int) -> None:
    reading = loss_reading(equity, floor, allowance, start)
    assert reading.remaining_cents == equity - floor
    assert reading.floor_cents == floor
    assert (reading.status == VIOLATION) == (equity < floor)
    assert reading.threshold == Fraction(allowance, start)
    assert reading.value == Fraction(allowance - (equity - floor), start)
    if allowance:
        assert reading.used == 1 - Fraction(equity - floor, allowance)


@PROPERTY_SETTINGS
@given(peak=positive_cents, equity=cents, threshold=ratios)
def test_legacy_drawdown_violates_exactly_below_its_rounded_up_floor(
    peak: int, equity: int, threshold: Decimal
) -> None:
    reading = legacy_drawdown_reading(peak, equity, threshold)
    assert reading.floor_cents is not None
    assert reading.floor_cents >= Fraction(peak) * (1 - Fraction(threshold))
    assert reading.floor_cents - 1 < Fraction(peak) * (1 - Fraction(threshold))
    assert reading.remaining_cents == equity - reading.floor_cents
    assert (reading.status == VIOLATION) == (equity < reading.floor_cents)


@PROPERTY_SETTINGS
@given(notional=st.none() | st.integers(0, 10**12), equity=positive_cents, limit=ratios)
def test_risk_remaining_rounds_down_and_agrees_with_the_status(
    notional: int | None, equity: int, limit: Decimal
) -> None:
    reading = risk_reading(notional, equity, limit)
    exact = Fraction(limit) * equity - (notional or 0)
    assert reading.remaining_cents <= exact < reading.remaining_cents + 1
    assert (reading.status == VIOLATION) == (reading.remaining_cents < 0)


money_text = positive_cents.map(lambda n: f"{n // 100}.{n % 100:02d}")
ratio_text = ratios.map(str)


@st.composite
def rule_objects(draw: st.DrawFn) -> dict[str, Any]:
    rules: dict[str, Any] = {}

    def limit_or_amount() -> dict[str, Any]:
        if draw(st.booleans()):
            return {"limit": draw(ratio_text)}
        return {"amount": draw(money_text)}

    if draw(st.booleans()):
        mode = draw(st.sampled_from(["static", "trailing", "trailing_eod"]))
        max_loss = {"mode": mode, **limit_or_amount()}
        lock = draw(st.sampled_from(["none", "start", "amount"]))
        if mode != "static" and lock == "start":
            max_loss["lock_at"] = "starting_balance"
        if mode != "static" and lock == "amount":
            max_loss["lock_at_amount"] = draw(money_text)
        rules["max_loss"] = max_loss
    if draw(st.booleans()):
        daily = {
            **limit_or_amount(),
            "anchor": draw(st.sampled_from(["balance", "equity", "max"])),
            "action": draw(st.sampled_from(["close", "lock"])),
        }
        if draw(st.booleans()):
            daily["reset_tz"] = draw(st.sampled_from(["UTC", "Europe/Prague", "America/Chicago"]))
            daily["reset_at"] = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
        rules["daily_loss"] = daily
    if draw(st.booleans()):
        rules["risk_per_trade"] = {"limit": draw(ratio_text)}
    if draw(st.booleans()):
        rules["consistency"] = {"max_best_day_share": draw(ratio_text)}
    if draw(st.booleans()):
        rules["min_trading_days"] = draw(st.integers(0, 10_000))
    if draw(st.booleans()):
        rules["min_winning_days"] = {
            "days": draw(st.integers(0, 10_000)),
            "min_profit": draw(money_text),
        }
    if draw(st.booleans()):
        rules["payout_interval_days"] = draw(st.integers(0, 10_000))
    return rules


@PROPERTY_SETTINGS
@given(rules=rule_objects())
def test_every_valid_pack_round_trips_through_its_canonical_form(rules: dict[str, Any]) -> None:
    pack = parse_rules(rules)
    wire = pack.to_wire()
    assert parse_rules(wire) == pack
    assert parse_rules(json.loads(json.dumps(wire))).to_wire() == wire
    assert list(wire) == [key for key in CONTRACT_RULES if key in rules]
