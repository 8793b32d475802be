"""Rule packs applied to an account (CONTRACT section 4a), every figure computed by hand.

The story's clock ticks a minute per input; `at(story, "...")` makes the next input happen at
that instant. funded-100k numbers: S = 100,000.00.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.account import DAILY_LOSS_LOCKED
from domain.policy import eligibility
from domain.rulepacks import canonical_json, evidence_digest, verify_digest
from domain.state import AccountState
from domain.tiers import Tier, parse_tier
from tests.unit.domain.story import Story, cents, types


def pack_tier(rules: dict[str, Any], **extra: Any) -> Tier:
    return parse_tier(
        {
            "tier_id": "pack-100k",
            "name": "Pack 100K",
            "starting_balance": "100000.00",
            "profit_split": "0.80",
            "rules": rules,
            **extra,
        }
    )


STATIC_PRAGUE = {
    "max_loss": {"mode": "static", "limit": "0.10"},
    "daily_loss": {
        "limit": "0.05",
        "anchor": "balance",
        "reset_tz": "Europe/Prague",
        "reset_at": "00:00",
        "action": "close",
    },
    "risk_per_trade": {"limit": "0.05"},
}
SOFT_CHICAGO = {
    "max_loss": {"mode": "trailing_eod", "amount": "3000.00", "lock_at": "starting_balance"},
    "daily_loss": {
        "amount": "1000.00",
        "anchor": "max",
        "reset_tz": "America/Chicago",
        "reset_at": "17:00",
        "action": "lock",
    },
}


def at(story: Story, instant: str) -> None:
    """The next input happens at `instant` (the story ticks a minute before each input)."""
    story.clock = datetime.fromisoformat(instant.replace("Z", "+00:00")) - timedelta(minutes=1)


def facts_of(story: Story, kind: str) -> list[dict[str, Any]]:
    assert story.last is not None
    return [f for f in story.last.facts if f["type"] == kind]


def reading(state: AccountState, rule: str) -> dict[str, Any]:
    return state.readings()[rule].to_wire()


# --- static max loss and a daily loss that closes -------------------------------------------


def test_a_pack_account_starts_its_first_day_at_activation() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    book = story.state.book
    assert book is not None
    # Activated 2026-11-23T10:00Z = 11:00 in Prague (UTC+1): day 2026-11-23, ends at midnight.
    assert book.day.isoformat() == "2026-11-23"
    assert book.day_end == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert book.day_anchor_cents == cents("100000.00")
    assert story.state.rule_status == {
        "max_loss": "safe",
        "daily_loss": "safe",
        "risk_per_trade": "safe",
    }
    assert reading(story.state, "max_loss") == {
        "value": "0.0000",  # (L - remaining) / S = (10,000 - 10,000) / 100,000
        "threshold": "0.1000",
        "status": "safe",
        "remaining": "10000.00",
        "floor": "90000.00",
    }
    assert reading(story.state, "daily_loss") == {
        "value": "0.0000",
        "threshold": "0.0500",
        "status": "safe",
        "remaining": "5000.00",
        "floor": "95000.00",
    }


def test_a_daily_loss_one_cent_past_the_floor_closes_with_evidence() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    story.open("p-1", notional="1000.00")
    out = story.update("p-1", "-4000.00")  # equity 96,000.00: used 0.8 of the day -> warning
    assert [(f["rule"], f["status"]) for f in out.facts] == [("daily_loss", "warning")]
    assert out.facts[0]["remaining"] == "1000.00" and out.facts[0]["floor"] == "95000.00"
    trigger = story.updated("p-1", "-5000.01")
    out = story.send(trigger)
    assert types(out) == [
        "rules.status-changed",
        "rules.violation-detected",
        "funded-account.closed",
    ]
    violation = out.facts[1]
    assert violation["rule"] == "daily_loss" and violation["action"] == "close"
    assert violation["remaining"] == "-0.01" and violation["floor"] == "95000.00"
    evidence = violation["evidence"]
    assert evidence["formula"] == ("equity 94999.99 < floor 95000.00 = anchor 100000.00 - 5000.00")
    assert evidence["before"] == {
        "equity": "96000.00",
        "balance": "100000.00",
        "peak_balance": "100000.00",
        "day": "2026-11-23",
        "day_anchor": "100000.00",
        "floor": "95000.00",
    }
    assert evidence["after"]["equity"] == "94999.99"
    assert evidence["terms"] == STATIC_PRAGUE["daily_loss"] | {"limit": "0.0500"}
    assert evidence["trigger"] == trigger.to_wire()
    # The hash is the SHA-256 of the canonical JSON of the rest, and survives the wire.
    assert verify_digest(json.loads(json.dumps(evidence)))
    body = {k: v for k, v in evidence.items() if k != "sha256"}
    assert canonical_json(body).startswith(b'{"after":{"balance":"100000.00"')
    assert evidence["sha256"] == evidence_digest(body)
    tampered = {**evidence, "formula": evidence["formula"].replace("94999.99", "95000.00")}
    assert not verify_digest(tampered)
    assert story.state.closure_reason == "rule_violation:daily_loss"


def test_the_trigger_is_the_event_as_received() -> None:
    from domain.events import parse_trade

    story = Story(pack_tier(STATIC_PRAGUE))
    story.open("p-1")
    received = {
        "event_id": "tick-9",
        "type": "position_updated",
        "account_id": story.account_id,
        "position_id": "p-1",
        "unrealized_pnl": "-10000.01",
        "occurred_at": "2026-11-23T12:00:00.5+01:00",
        "venue": {"name": "LMAX", "latency_ms": 3},
    }
    out = story.send(parse_trade(received))
    violations = [f for f in out.facts if f["type"] == "rules.violation-detected"]
    assert [f["rule"] for f in violations] == ["max_loss", "daily_loss"]
    assert violations[0]["evidence"]["trigger"] == received
    assert story.state.closure_reason == "rule_violation:max_loss"


def test_the_next_day_is_anchored_on_the_balance_just_before_its_first_event() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    story.trade("2000.00")  # balance 102,000.00 on 2026-11-23
    story.open("p-2")
    story.update("p-2", "-500.00")  # equity 101,500.00 at the day's end
    at(story, "2026-11-23T23:00:00Z")  # midnight in Prague: 2026-11-24 begins
    story.update("p-2", "-500.00")
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2026-11-24"
    # anchor "balance": realized only, the open loss is not in it.
    assert book.day_anchor_cents == cents("102000.00")
    assert reading(story.state, "daily_loss")["floor"] == "97000.00"
    assert book.trading_days == 1 and book.best_day_pnl_cents == cents("2000.00")
    assert book.highest_closed_balance_cents == cents("102000.00")
    # 97,000.00 is still inside: equity 97,000.00 is danger, not a breach.
    story.update("p-2", "-5000.00")
    assert story.state.is_active and story.state.rule_status["daily_loss"] == "danger"
    story.update("p-2", "-5000.01")
    assert story.state.closure_reason == "rule_violation:daily_loss"


def test_a_late_event_is_applied_to_the_current_day() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    story.open("p-1")
    at(story, "2026-11-24T08:00:00Z")
    story.update("p-1", "100.00")
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2026-11-24"
    at(story, "2026-11-23T22:00:00Z")  # yesterday in Prague
    story.close("p-1", "100.00")
    assert book.day.isoformat() == "2026-11-24"
    assert book.day_pnl_cents(story.state.realized_pnl_cents) == cents("100.00")
    assert book.trading_days == 1  # 2026-11-23 (the open); today's close counts on close


# --- a daily loss that locks ------------------------------------------------------------------


def test_a_soft_daily_loss_locks_new_positions_until_the_next_reset_then_unlocks() -> None:
    story = Story(pack_tier(SOFT_CHICAGO))
    # 2026-11-23T10:00Z is 04:00 in Chicago (UTC-6): day 2026-11-22, ends at 17:00 = 23:00Z.
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2026-11-22"
    assert book.day_end == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    story.open("p-1")
    out = story.update("p-1", "-1000.01")
    # max_loss: 1,999.99 of 3,000.00 left, still safe
    assert types(out) == [
        "rules.status-changed",
        "rules.violation-detected",
        "funded-account.locked",
    ]
    assert out.facts[1]["action"] == "lock" and out.facts[1]["rule"] == "daily_loss"
    assert out.facts[2]["until"] == "2026-11-23T23:00:00Z"
    assert story.state.is_active
    # A new position is refused; the open one still moves, and cannot breach the day again.
    before = story.state.to_dict()
    refused = story.open("p-2")
    assert refused.dead_letter == DAILY_LOSS_LOCKED and not refused.changed
    assert story.state.to_dict() == before
    out = story.update("p-1", "-1500.00")
    assert "rules.violation-detected" not in types(out) and story.state.is_active
    story.close("p-1", "-1500.00")  # balance 98,500.00
    # The next day (17:00 Chicago): the first event ends the lock, then applies.
    at(story, "2026-11-23T23:00:00Z")
    out = story.open("p-3")
    assert types(out)[0] == "funded-account.unlocked" and not out.dead_letter
    assert out.facts[0]["rule"] == "daily_loss"
    assert story.state.book is not None and story.state.book.locked_until is None
    # anchor "max" of balance 98,500.00 and equity 98,500.00
    assert reading(story.state, "daily_loss")["floor"] == "97500.00"


def test_a_read_on_the_next_day_sees_the_lock_over_without_changing_state() -> None:
    story = Story(pack_tier(SOFT_CHICAGO))
    story.open("p-1")
    story.update("p-1", "-1000.01")
    stored = story.state.to_dict()
    later = story.state.as_of(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))
    assert later.book is not None and later.book.locked_until is None
    assert later.day_wire()["trading_day"]["day"] == "2026-11-23"
    assert story.state.to_dict() == stored
    same_day = story.state.as_of(datetime(2026, 11, 23, 22, 59, tzinfo=UTC))
    assert same_day is story.state


# --- trailing floors ---------------------------------------------------------------------------


def test_a_trailing_floor_follows_the_highest_equity_up_to_its_lock() -> None:
    rules = {"max_loss": {"mode": "trailing", "limit": "0.05", "lock_at_amount": "100100.00"}}
    story = Story(pack_tier(rules))
    story.open("p-1")
    story.update("p-1", "3000.00")  # equity 103,000.00: floor 98,000.00, capped at 100,100.00
    assert reading(story.state, "max_loss")["floor"] == "98000.00"
    story.update("p-1", "5200.00")  # 105,200.00 - 5,000.00 = 100,200.00 -> the lock
    assert reading(story.state, "max_loss")["floor"] == "100100.00"
    story.update("p-1", "100.00")  # equity falls: the floor stays
    assert reading(story.state, "max_loss") == {
        "value": "0.0500",  # (5,000.00 - 0.00) / 100,000.00
        "threshold": "0.0500",
        "status": "danger",
        "remaining": "0.00",
        "floor": "100100.00",
    }
    out = story.update("p-1", "99.99")
    assert story.state.closure_reason == "rule_violation:max_loss"
    evidence = next(f for f in out.facts if f["type"] == "rules.violation-detected")["evidence"]
    assert evidence["formula"] == (
        "equity 100099.99 < floor 100100.00 = lock_at_amount 100100.00 (capping "
        "highest_equity 105200.00 - 5000.00 = 100200.00)"
    )


def test_the_end_of_day_trailing_floor_moves_on_closed_days_and_stops_at_its_lock() -> None:
    story = Story(pack_tier(SOFT_CHICAGO))
    story.open("p-1")
    story.update("p-1", "2500.00")  # intraday equity does not move an end-of-day floor
    assert reading(story.state, "max_loss")["floor"] == "97000.00"
    story.close("p-1", "1200.00")  # day 2026-11-22 closes at 101,200.00
    at(story, "2026-11-23T23:00:00Z")
    story.open("p-2")
    assert reading(story.state, "max_loss")["floor"] == "98200.00"  # 101,200.00 - 3,000.00
    story.close("p-2", "2500.00")  # 103,700.00 at the close of 2026-11-23
    at(story, "2026-11-24T23:00:00Z")
    story.open("p-3")
    # 103,700.00 - 3,000.00 = 100,700.00, locked at the starting balance
    assert reading(story.state, "max_loss")["floor"] == "100000.00"
    story.close("p-3", "-3000.00")
    at(story, "2026-11-25T23:00:00Z")
    story.open("p-4")  # a lower close does not lower the floor
    assert reading(story.state, "max_loss")["floor"] == "100000.00"


# --- DST ---------------------------------------------------------------------------------------


def test_the_chicago_reset_moves_one_hour_in_utc_across_the_spring_change() -> None:
    story = Story(pack_tier(SOFT_CHICAGO))
    story.open("p-1")
    at(story, "2027-03-13T22:30:00Z")  # CST: 16:30, still 2027-03-12's day
    story.update("p-1", "1.00")
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2027-03-12"
    assert book.day_end == datetime(2027, 3, 13, 23, 0, tzinfo=UTC)
    at(story, "2027-03-13T23:00:00Z")  # 17:00 CST: day 2027-03-13, which ends at 17:00 CDT
    story.update("p-1", "2.00")
    assert book.day.isoformat() == "2027-03-13"
    assert book.day_end == datetime(2027, 3, 14, 22, 0, tzinfo=UTC)
    at(story, "2027-03-14T22:30:00Z")  # 17:30 CDT: the next day already
    story.update("p-1", "3.00")
    assert book.day.isoformat() == "2027-03-14"


def test_the_prague_day_of_the_autumn_change_is_25_hours() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    story.open("p-1")
    at(story, "2027-10-30T22:00:00Z")  # 00:00 CEST on 2027-10-31
    story.update("p-1", "1.00")
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2027-10-31"
    assert book.day_end == datetime(2027, 10, 31, 23, 0, tzinfo=UTC)  # 00:00 CET, 25 h later


# --- payout gates ------------------------------------------------------------------------------

GATED = {
    "max_loss": {"mode": "static", "limit": "0.10"},
    "consistency": {"max_best_day_share": "0.50"},
    "min_trading_days": 2,
    "min_winning_days": {"days": 2, "min_profit": "150.00"},
    "payout_interval_days": 14,
}


def test_each_gate_refuses_with_its_code_and_details_until_it_is_met() -> None:
    story = Story(pack_tier(GATED))
    story.trade("1000.00")  # day 2026-11-23 (UTC days): one trading and winning day
    out = story.request("100.00")
    assert out.reply is not None and out.reply.code == "min_trading_days_not_met"
    assert out.reply.details == {
        "gate": "min_trading_days",
        "passed": False,
        "value": "1",
        "required": "2",
        "message": "1 trading day (a position opened or closed), at least 2 required",
    }
    assert out.reply.to_wire()["error"]["details"]["gate"] == "min_trading_days"
    at(story, "2026-11-24T09:00:00Z")
    story.trade("100.00")  # a trading day, not a winning one (below 150.00)
    assert story.request("100.00").reply.code == "min_winning_days_not_met"  # type: ignore[union-attr]
    at(story, "2026-11-25T09:00:00Z")
    story.trade("200.00")
    # best day 1,000.00 of total 1,300.00: above 0.5 x 1,300.00 = 650.00
    out = story.request("100.00")
    assert out.reply is not None and out.reply.code == "consistency_not_met"
    assert out.reply.details is not None
    assert out.reply.details["value"] == "best day 2026-11-23 1000.00 of total 1300.00"
    at(story, "2026-11-26T09:00:00Z")
    story.trade("800.00")  # total 2,100.00: 1,000.00 <= 1,050.00
    out = story.request("100.00")
    assert out.reply is not None and out.reply.code == "payout_interval_not_met"
    at(story, "2026-12-07T10:00:00Z")  # 14 days after activation
    out = story.request("100.00")
    assert out.reply is not None and out.reply.accepted, out.reply


def test_a_refusal_repeated_gets_its_details_again() -> None:
    story = Story(pack_tier(GATED))
    story.trade("1000.00")
    request = story.requested("100.00")
    first = story.send(request)
    again = story.send(request)
    assert again.duplicate and again.reply == first.reply
    assert again.reply is not None and again.reply.details is not None


def test_payout_eligibility_lists_every_gate_in_order() -> None:
    story = Story(pack_tier(GATED))
    story.trade("1000.00")
    view = eligibility(story.state, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert [g["gate"] for g in view["gates"]] == [
        "account_active",
        "no_open_positions",
        "min_trades",
        "min_withdrawal",
        "min_trading_days",
        "min_winning_days",
        "consistency",
        "payout_interval_days",
    ]
    assert [g["passed"] for g in view["gates"]] == [True, True, True, True] + [False] * 3 + [False]
    assert view == {**view, "eligible": False, "max_amount": "0.00"}
    # The consistency gate counts the current day: one day is all of the profit.
    assert view["gates"][6]["value"] == "best day 2026-11-23 1000.00 of total 1000.00"


def test_eligible_gives_the_withdrawable_amount() -> None:
    story = Story(pack_tier({"max_loss": {"mode": "static", "limit": "0.10"}}))
    story.trade("1000.00")
    view = eligibility(story.state, datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert view["eligible"] and view["max_amount"] == "800.00"  # 0.80 x 1,000.00


# --- the stored value --------------------------------------------------------------------------


def test_the_book_survives_the_stored_form_and_does_not_grow_with_days() -> None:
    story = Story(pack_tier({**STATIC_PRAGUE, **GATED}))
    sizes = []
    for day in range(60):
        at(story, (datetime(2026, 11, 24, 9, 0, tzinfo=UTC) + timedelta(days=day)).isoformat())
        story.trade("10.00")
        stored = story.state.to_dict()
        assert AccountState.from_dict(json.loads(json.dumps(stored))).to_dict() == stored
        sizes.append(len(json.dumps({k: v for k, v in stored.items() if k != "recent_ids"})))
    assert max(sizes[10:]) - min(sizes[10:]) < 40  # digits of growing counters, nothing more


def test_days_without_events_count_as_days_without_trades() -> None:
    story = Story(pack_tier({**STATIC_PRAGUE, **GATED}))
    story.trade("300.00")  # 2026-11-23: a trading and winning day
    at(story, "2026-11-27T08:00:00Z")  # three Prague days with no event in between
    story.open("p-9")
    book = story.state.book
    assert book is not None and book.day.isoformat() == "2026-11-27"
    assert book.trading_days == 1 and book.winning_days == 1
    assert book.best_day is not None and book.best_day.isoformat() == "2026-11-23"
    # The closing balance of the empty days is the one the first day closed with.
    assert book.highest_closed_balance_cents == cents("100300.00")
    assert book.highest_closed_day is not None
    assert book.highest_closed_day.isoformat() == "2026-11-23"
    assert book.day_anchor_cents == cents("100300.00")
    assert book.day_end == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
