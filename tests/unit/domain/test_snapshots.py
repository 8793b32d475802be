from __future__ import annotations

from domain.snapshots import snapshot, withdrawal_ids_in
from tests.unit.domain.story import Story


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
