from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from app.sink_db import parse_snapshot
from domain.policy import eligibility
from domain.snapshots import day_figures, snapshot, withdrawal_ids_in
from domain.state import AccountState
from tests.unit.domain.story import Story, types
from tests.unit.domain.test_pack_accounts import SOFT_CHICAGO, STATIC_PRAGUE, at, pack_tier


def test_snapshot_rows_follow_the_state_and_name_only_touched_withdrawals() -> None:
    story = Story()
    story.trade("5000.00")
    outcome = story.request("1500.00")
    wid = withdrawal_ids_in(outcome.facts)
    assert len(wid) == 1
    snap = snapshot(story.state, [*wid, "w-unknown"])
    assert snap["account_id"] == story.account_id
    assert snap["version"] == story.state.version
    assert snap["account"]["status"] == "active"
    assert snap["account"]["tier_id"] == "funded-100k"
    assert snap["balances"]["current_balance"] == "105000.00"
    assert snap["balances"]["peak_balance"] == "105000.00"
    assert snap["balances"]["realized_pnl"] == "5000.00"
    assert [w["id"] for w in snap["withdrawals"]] == wid
    row = snap["withdrawals"][0]
    assert row["amount"] == "1500.00" and row["status"] == "pending"
    assert row["approved_at"] is None and row["funded_account_id"] == story.account_id


def test_withdrawal_ids_in_keeps_order_and_drops_repeats() -> None:
    facts = [{"withdrawal_id": "b"}, {"type": "x"}, {"withdrawal_id": "a"}, {"withdrawal_id": "b"}]
    assert withdrawal_ids_in(facts) == ["b", "a"]


# --- a rule-pack account's day on its balances row ---------------------------------------------

LEGACY_BALANCE_KEYS = {
    "id",
    "funded_account_id",
    "starting_balance",
    "current_balance",
    "peak_balance",
    "realized_pnl",
    "unrealized_pnl",
    "total_withdrawals",
    "updated_at",
}
DAY_KEYS = {
    "trading_day",
    "day_resets_at",
    "day_anchor",
    "day_pnl",
    "locked_until",
    "trading_days",
    "winning_days",
}
# A daily loss of 1,000.00 that locks, days from 17:00 in Chicago, winning days from 150.00.
LOCKING = {
    **SOFT_CHICAGO,
    "min_trading_days": 3,
    "min_winning_days": {"days": 2, "min_profit": "150.00"},
}


def gate_figures(state: AccountState, now: datetime) -> dict[str, str]:
    gates = eligibility(state, now)["gates"]
    wanted = ("min_trading_days", "min_winning_days")
    return {g["gate"]: g["value"] for g in gates if g["gate"] in wanted}


def test_a_legacy_snapshot_has_no_day_keys_and_its_rows_leave_the_columns_null() -> None:
    story = Story()
    story.trade("250.00")
    snap = snapshot(story.state)
    assert set(snap["balances"]) == LEGACY_BALANCE_KEYS
    assert day_figures(story.state) == {}
    _, rows, _ = parse_snapshot(snap)
    assert {c: rows.balances[c] for c in DAY_KEYS} == dict.fromkeys(DAY_KEYS)


def test_a_pack_snapshot_carries_the_day_the_lock_and_the_gate_counters() -> None:
    story = Story(pack_tier(LOCKING))
    # Activated 2026-11-23T10:00Z = 04:00 in Chicago: day 2026-11-22, ends 17:00 = 23:00Z.
    balances = snapshot(story.state)["balances"]
    assert set(balances) == LEGACY_BALANCE_KEYS | DAY_KEYS
    assert {k: balances[k] for k in DAY_KEYS} == {
        "trading_day": "2026-11-22",
        "day_resets_at": "2026-11-23T23:00:00Z",
        "day_anchor": "100000.00",
        "day_pnl": "0.00",
        "locked_until": None,
        "trading_days": 0,
        "winning_days": 0,
    }

    story.trade("200.00")  # a trading day, winning so far (200.00 >= 150.00)
    story.open("p-1")
    story.update("p-1", "-1200.01")  # equity 98,999.99 < floor 99,000.00: locked
    assert story.last is not None and "funded-account.locked" in types(story.last)
    balances = snapshot(story.state)["balances"]
    assert {k: balances[k] for k in DAY_KEYS} == {
        "trading_day": "2026-11-22",
        "day_resets_at": "2026-11-23T23:00:00Z",
        "day_anchor": "100000.00",
        "day_pnl": "200.00",  # closed P&L only: the open loss is not in it
        "locked_until": "2026-11-23T23:00:00Z",
        "trading_days": 1,
        "winning_days": 1,
    }
    assert gate_figures(story.state, datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) == {
        "min_trading_days": "1",
        "min_winning_days": "1",
    }

    story.close("p-1", "-1200.01")  # the day's closed P&L -1,000.01: no longer a winning day
    balances = snapshot(story.state)["balances"]
    assert (balances["day_pnl"], balances["winning_days"]) == ("-1000.01", 0)

    at(story, "2026-11-23T23:00:00Z")  # 17:00 in Chicago: 2026-11-23 begins, the lock ends
    story.open("p-2")
    assert story.last is not None and types(story.last)[0] == "funded-account.unlocked"
    balances = snapshot(story.state)["balances"]
    assert {k: balances[k] for k in DAY_KEYS} == {
        "trading_day": "2026-11-23",
        "day_resets_at": "2026-11-24T23:00:00Z",
        "day_anchor": "98999.99",  # anchor "max" of balance and equity, both 98,999.99
        "day_pnl": "0.00",
        "locked_until": None,
        "trading_days": 2,  # yesterday, and today's open
        "winning_days": 0,
    }
    assert gate_figures(story.state, datetime(2026, 11, 24, 12, 0, tzinfo=UTC)) == {
        "min_trading_days": "2",
        "min_winning_days": "0",
    }
    # The rows the sink makes of it: a date, times, money as Decimal, counts as int.
    _, rows, _ = parse_snapshot(snapshot(story.state))
    b = rows.balances
    assert b["trading_day"] == date(2026, 11, 23)
    assert b["day_resets_at"] == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    assert b["day_anchor"] == Decimal("98999.99") and isinstance(b["day_pnl"], Decimal)
    assert b["locked_until"] is None
    assert (b["trading_days"], b["winning_days"]) == (2, 0)


def test_a_pack_without_min_winning_days_has_no_winning_day_count() -> None:
    story = Story(pack_tier(STATIC_PRAGUE))
    story.trade("500.00")
    balances = snapshot(story.state)["balances"]
    assert balances["winning_days"] is None and balances["trading_days"] == 1
    assert balances["trading_day"] == "2026-11-23" and balances["day_pnl"] == "500.00"
    assert balances["day_resets_at"] == "2026-11-23T23:00:00Z"  # midnight in Prague


def test_the_counters_do_not_change_when_an_idle_account_is_read_on_a_later_day() -> None:
    story = Story(pack_tier(LOCKING))
    story.trade("300.00")
    stored = snapshot(story.state)["balances"]
    later = story.state.as_of(datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    rolled = snapshot(later)["balances"]
    assert (stored["trading_days"], stored["winning_days"]) == (1, 1)
    assert (rolled["trading_days"], rolled["winning_days"]) == (1, 1)
    assert rolled["trading_day"] == "2026-11-25" and rolled["day_pnl"] == "0.00"
    assert stored["trading_day"] == "2026-11-22" and stored["day_pnl"] == "300.00"
