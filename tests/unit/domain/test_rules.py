"""Rules on every trade event (CONTRACT section 4)."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.rules import (
    DANGER,
    SAFE,
    VIOLATION,
    WARNING,
    RuleReading,
    band,
    band_of,
    drawdown,
    drawdown_band,
    risk_per_trade,
    risk_per_trade_band,
)
from tests.unit.domain.story import Story, cents, tier, types

# funded-100k: start 100,000.00, drawdown 0.10, risk per trade 0.05.


@pytest.mark.parametrize(
    ("loss", "status"),
    [
        ("7999.99", SAFE),
        ("8000.00", WARNING),  # exactly 0.8 of the threshold
        ("8000.01", WARNING),
        ("8999.99", WARNING),
        ("9000.00", DANGER),  # exactly 0.9
        ("9000.01", DANGER),
        ("9999.99", DANGER),
        ("10000.00", DANGER),  # exactly 1.0 is still danger
        ("10000.01", VIOLATION),
    ],
)
def test_drawdown_bands_at_and_around_each_boundary(loss: str, status: str) -> None:
    story = Story()
    story.open("p-1", notional="100.00")
    story.update("p-1", f"-{loss}")
    assert story.state.readings()["drawdown"].status == status
    assert story.state.is_active == (status != VIOLATION)


@pytest.mark.parametrize(
    ("notional", "status"),
    [
        ("3999.99", SAFE),
        ("4000.00", WARNING),
        ("4000.01", WARNING),
        ("4499.99", WARNING),
        ("4500.00", DANGER),
        ("4500.01", DANGER),
        ("5000.00", DANGER),
        ("5000.01", VIOLATION),
    ],
)
def test_risk_per_trade_bands_at_and_around_each_boundary(notional: str, status: str) -> None:
    story = Story()
    story.open("p-1", notional=notional)
    assert story.state.readings()["risk_per_trade"].status == status
    assert story.state.is_active == (status != VIOLATION)


def test_a_status_change_is_published_once_with_both_statuses() -> None:
    story = Story()
    out = story.open("p-1", notional="4000.00")
    assert types(out) == ["rules.status-changed"]
    fact = out.facts[0]
    assert {k: fact[k] for k in ("rule", "previous_status", "status", "value", "threshold")} == {
        "rule": "risk_per_trade",
        "previous_status": "safe",
        "status": "warning",
        "value": "0.0400",
        "threshold": "0.0500",
    }
    assert fact["occurred_at"] == "2026-11-23T10:01:00Z"
    assert fact["account_id"] == story.account_id and fact["user_id"] == "usr_42"
    # Same band again: no fact.
    assert story.update("p-1", "0.00", notional="4100.00").facts == []
    # Back to safe: one fact.
    out = story.update("p-1", "0.00", notional="100.00")
    assert [(f["previous_status"], f["status"]) for f in out.facts] == [("warning", "safe")]
    assert story.state.rule_status == {"drawdown": "safe", "risk_per_trade": "safe"}


def test_the_drawdown_is_measured_from_the_peak() -> None:
    story = Story()
    story.trade("20000.00")  # balance 120,000.00: the new peak
    assert story.state.peak_balance_cents == 120_000_00
    story.open("p-9", notional="100.00")
    story.update("p-9", "-12000.00")  # 108,000.00: 10 % below the peak, still danger
    assert story.state.readings()["drawdown"].value == Fraction(1, 10)
    assert story.state.is_active
    out = story.update("p-9", "-12000.01")
    assert "funded-account.closed" in types(out)
    assert story.state.closure_reason == "rule_violation:drawdown"


def test_a_drawdown_violation_closes_the_account_and_rejects_pending_withdrawals() -> None:
    story = Story()
    story.trade("5000.00")  # share 4,000.00
    pending = story.withdraw("1500.00")
    approved = story.withdraw("500.00")
    assert story.state.withdrawals[pending].status == "pending"
    story.open("p-x", notional="100.00")
    out = story.update("p-x", "-10500.01")  # 105,000.00 peak -> 94,499.99: above 10 %
    assert types(out) == [
        "rules.status-changed",
        "rules.violation-detected",
        "funded-account.closed",
        "withdrawal.rejected",
    ]
    changed, violation, closed, rejected = out.facts
    assert (changed["previous_status"], changed["status"]) == ("safe", "violation")
    assert violation["rule"] == "drawdown"
    assert violation["trigger_event_id"] == story.state.recent_ids[-1][0]
    assert violation["threshold"] == "0.1000" and violation["value"] == "0.1000"
    assert closed["reason"] == "rule_violation:drawdown"
    assert closed["closed_at"] == closed["occurred_at"]
    assert closed["current_balance"] == "94499.99"
    assert rejected["withdrawal_id"] == pending
    assert rejected["reason"] == "account_closed" and rejected["rejected_by"] == "system"
    state = story.state
    assert state.status == "closed" and state.closed_at == story.clock
    assert state.withdrawals[pending].status == "rejected"
    assert state.withdrawals[pending].rejected_at == story.clock
    # The approved one is already with the payout and is left to finish.
    assert state.withdrawals[approved].status == "approved"
    assert story.paid(approved).changed
    assert state.total_withdrawals_cents == 500_00


def test_both_rules_broken_at_once_name_the_drawdown() -> None:
    story = Story()
    story.open("p-1", notional="100.00")
    out = story.update("p-1", "-20000.00", notional="10000.00")
    assert types(out) == [
        "rules.status-changed",
        "rules.violation-detected",
        "rules.status-changed",
        "rules.violation-detected",
        "funded-account.closed",
    ]
    assert [f["rule"] for f in out.facts if f["type"] == "rules.violation-detected"] == [
        "drawdown",
        "risk_per_trade",
    ]
    assert story.state.closure_reason == "rule_violation:drawdown"


def test_a_risk_violation_on_opening_closes_the_account() -> None:
    story = Story()
    out = story.open("p-1", notional="5000.01")
    assert types(out)[-2:] == ["rules.violation-detected", "funded-account.closed"]
    assert story.state.closure_reason == "rule_violation:risk_per_trade"
    assert "p-1" in story.state.positions  # the position stays open until it is liquidated


def test_liquidation_after_closure_moves_balances_without_rule_facts() -> None:
    story = Story()
    story.open("p-1", notional="5000.01")
    assert story.state.status == "closed"
    version = story.state.version
    out = story.update("p-1", "-150000.00")  # the balance goes below zero
    assert out.changed and out.facts == []
    assert story.state.current_balance_cents == -50_000_00
    readings = story.state.readings()
    assert readings["risk_per_trade"].value is None  # unbounded on a negative balance
    assert readings["risk_per_trade"].to_wire() == {
        "value": None,
        "threshold": "0.0500",
        "status": "violation",
        # 0.05 x -50,000.00 - 5,000.01
        "remaining": "-7500.01",
        "floor": None,
    }
    out = story.close("p-1", "-120000.00")
    assert out.changed and out.facts == []
    assert story.state.realized_pnl_cents == -120_000_00
    assert story.state.closed_positions_count == 1
    assert story.state.positions == {}
    assert story.state.version == version + 2
    # New positions on a closed account make no sense.
    before = story.state.to_dict()
    out = story.open("p-2")
    assert out.dead_letter == "account_closed" and not out.changed
    assert story.state.to_dict() == before
    assert story.state.status == "closed"


def test_after_closure_the_peak_still_follows_the_balance() -> None:
    story = Story()
    story.open("p-1", notional="5000.01")
    story.update("p-1", "3000.00")
    assert story.state.peak_balance_cents == 103_000_00


def test_risk_uses_the_largest_open_position() -> None:
    story = Story()
    story.open("p-1", notional="1000.00")
    story.open("p-2", notional="4200.00")
    story.open("p-3", notional="2000.00")
    assert story.state.readings()["risk_per_trade"].value == Fraction(4200, 100_000)
    story.close("p-2", "0.00")
    assert story.state.readings()["risk_per_trade"].value == Fraction(2000, 100_000)


def test_band_and_reading_helpers() -> None:
    assert band(None, Decimal("0.05")) == VIOLATION
    assert band(Fraction(0), Decimal("0.05")) == SAFE
    assert risk_per_trade(None, -5) == 0
    assert risk_per_trade(100, 0) is None
    reading = RuleReading("drawdown", Fraction(1, 3), Decimal("0.1"), VIOLATION)
    assert reading.to_wire() == {"value": "0.3333", "threshold": "0.1000", "status": "violation"}


def test_lenient_thresholds_of_other_tiers_apply() -> None:
    story = Story(tier(max_drawdown=Decimal("0.15")))
    story.open("p-1", notional="100.00")
    story.update("p-1", "-12000.00")  # 0.12 / 0.15 = 0.8
    assert story.state.readings()["drawdown"].status == WARNING
    assert cents("1.00") == 100


# --- the integer bands of the per-event path ----------------------------------------------------


_CENTS = st.integers(min_value=-(10**15), max_value=10**15)
_THRESHOLDS = st.decimals(
    min_value=Decimal("0.0001"), max_value=Decimal("5"), places=4, allow_nan=False
)


@given(_CENTS, st.integers(min_value=1, max_value=10**15), _THRESHOLDS)
def test_the_integer_band_is_the_exact_band(num: int, den: int, threshold: Decimal) -> None:
    assert band_of(num, den, threshold) == band(Fraction(num, den), threshold)


@given(st.integers(min_value=1, max_value=10**13), st.data(), _THRESHOLDS)
def test_the_integer_band_at_each_boundary(den: int, data: st.DataObject, t: Decimal) -> None:
    # Values exactly at 0.8, 0.9 and 1 of the threshold, and one unit of n/(den*p*10) around.
    p, q = t.as_integer_ratio()
    for tenths in (8, 9, 10):
        at = Fraction(tenths * p, 10 * q)  # the value at that share of the threshold
        for num, d in ((at.numerator * den, at.denominator * den),):
            for delta in (-1, 0, 1):
                assert band_of(num + delta, d, t) == band(Fraction(num + delta, d), t)
    shift = data.draw(st.integers(min_value=-3, max_value=3))
    assert band_of(8 * p * den + shift, 10 * q * den, t) == band(
        Fraction(8 * p * den + shift, 10 * q * den), t
    )


@given(
    st.integers(min_value=1, max_value=10**13),
    _CENTS,
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**13)),
    _THRESHOLDS,
)
def test_the_rule_bands_without_rationals(
    peak: int, equity: int, notional: int | None, limit: Decimal
) -> None:
    assert drawdown_band(peak, equity, limit) == band(drawdown(peak, equity), limit)
    assert risk_per_trade_band(notional, equity, limit) == band(
        risk_per_trade(notional, equity), limit
    )
