"""Activation, dedupe, stored and wire forms of an account."""

import json
from dataclasses import replace

import pytest

from domain.account import Outcome, Remembered, Reply, handle
from domain.events import (
    ApproveWithdrawal,
    PayoutSucceeded,
    PositionOpened,
    RequestWithdrawal,
    account_id_for,
)
from domain.facts import fact_event_id
from domain.policy import Code, Refusal
from domain.state import RECENT_IDS, AccountState, CorruptState
from domain.timestamps import format_ts
from tests.unit.domain.story import DESTINATION, T0, USER, Story, types


def test_activation_creates_an_active_account_with_two_facts() -> None:
    story = Story()
    out = story.last
    assert out is not None and out.changed and out.reply is None
    assert types(out) == ["funded-account.created", "funded-account.activated"]
    created, activated = out.facts
    assert created == {
        "event_id": fact_event_id("act-1", "funded-account.created", story.account_id),
        "type": "funded-account.created",
        "occurred_at": "2026-11-23T10:00:00Z",
        "account_id": account_id_for("asm_7"),
        "user_id": USER,
        "assessment_id": "asm_7",
        "tier_id": "funded-100k",
        "starting_balance": "100000.00",
    }
    assert activated["activated_at"] == "2026-11-23T10:00:00Z"
    assert set(activated) == {
        "event_id",
        "type",
        "occurred_at",
        "account_id",
        "user_id",
        "activated_at",
    }
    state = story.state
    assert state.status == "active" and state.version == 1
    assert state.peak_balance_cents == state.starting_balance_cents == 100_000_00
    assert state.current_balance_cents == 100_000_00
    assert state.rule_status == {"drawdown": "safe", "risk_per_trade": "safe"}
    assert state.updated_at == T0


def test_a_second_activation_changes_nothing() -> None:
    story = Story()
    before = story.state.to_dict()
    again = story.send(story.activation)
    assert again.duplicate and again.facts == [] and again.state is story.state
    other = story.send(replace(story.activation, event_id="act-2"))
    assert other.duplicate and other.facts == []
    assert story.state.to_dict() == before


def test_facts_are_the_same_when_the_same_cause_is_handled_again() -> None:
    first, second = Story(), Story()
    assert first.last is not None and second.last is not None
    assert first.last.facts == second.last.facts
    a = first.open("p-1", notional="4500.00")
    b = second.open("p-1", notional="4500.00")
    assert a.facts == b.facts and a.facts


def test_inputs_for_an_unknown_account_are_dead_lettered() -> None:
    story = Story()
    command = story.requested("250.00")
    out = handle(None, command)
    assert out.dead_letter == "unknown_account" and out.state is None
    assert out.reply is not None and out.reply.code == "unknown_account"
    trade = story.opened()
    out = handle(None, trade)
    assert out.dead_letter == "unknown_account" and out.reply is None


def test_an_input_for_another_account_is_invalid() -> None:
    story = Story()
    trade = replace(story.opened(), account_id="fa_other")
    before = story.state.to_dict()
    out = story.send(trade)
    assert out.dead_letter == "invalid_event" and out.detail
    assert story.state.to_dict() == before


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (lambda s: s.update("p-404", "1.00"), "unknown_position"),
        (lambda s: s.close("p-404", "1.00"), "unknown_position"),
        (lambda s: s.open("p-1"), "duplicate_position"),
    ],
)
def test_trades_that_make_no_sense_are_dead_lettered(step, reason: str) -> None:
    story = Story()
    story.open("p-1")
    before = story.state.to_dict()
    out = step(story)
    assert out.dead_letter == reason and not out.changed
    assert story.state.to_dict() == before


def test_an_unsupported_input_is_dead_lettered_not_raised() -> None:
    story = Story()
    out = handle(story.state, object())  # type: ignore[arg-type]
    assert out.dead_letter == "invalid_event"


def test_the_same_trade_twice_is_applied_once() -> None:
    story = Story()
    story.open("p-1")
    event = story.updated("p-1", "250.00")
    once = story.send(event)
    after_once = story.state.to_dict()
    twice = story.send(event)
    assert once.changed and not twice.changed and twice.duplicate
    assert twice.facts == [] and twice.reply is None
    assert story.state.to_dict() == after_once


def test_recent_ids_are_bounded_and_back_the_memory_up() -> None:
    story = Story()
    story.open("p-1")
    first = story.updated("p-1", "10.00")
    story.send(first)
    for i in range(RECENT_IDS + 10):
        story.update("p-1", f"{i}.00")
    assert len(story.state.recent_ids) == RECENT_IDS
    assert story.state.recent_ids[-1][0] == f"t-{story.seq}"  # the newest is the last input
    # Long out of the value, the applied-ids memory still knows it.
    assert story.send(first).duplicate
    # Without the memory (its entry lost in a crash), a recent id is still recognised.
    recent = story.updated("p-1", "77.00")
    story.send(recent)
    assert handle(story.state, recent).duplicate


def test_an_id_the_memory_knows_is_a_duplicate() -> None:
    story = Story()
    story.open("p-1")
    event = story.updated("p-1", "5.00")
    out = handle(story.state, event, seen=Remembered())
    assert out.duplicate and not out.changed


def test_version_moves_on_every_applied_change_only() -> None:
    story = Story()
    story.open("p-1")
    assert story.state.version == 2
    story.update("p-404", "1.00")
    assert story.state.version == 2
    story.close("p-1", "100.00")
    assert story.state.version == 3


def test_updated_at_never_goes_back() -> None:
    story = Story()
    story.open("p-1")
    late = story.clock
    early = replace(story.updated("p-1", "5.00"), occurred_at=T0)
    story.send(early)
    assert story.state.updated_at == late


def rich_story() -> Story:
    story = Story()
    story.trade("60000.00")
    story.withdraw("500.00")  # approved
    pending = story.withdraw("2000.00")
    rejected = story.withdraw("1500.00")
    story.reject(rejected, reason="not today")
    paid = story.withdraw("300.00")
    story.paid(paid)
    failed = story.withdraw("200.00")
    story.payout_failed(failed)
    reversed_ = story.withdraw("100.00")
    story.paid(reversed_)
    story.reversed(reversed_)
    story.open("p-a", notional="1200.00")
    story.open("p-b", notional="2000.00")
    story.update("p-a", "-300.25")
    assert story.state.withdrawals[pending].status == "pending"
    return story


def test_stored_form_round_trips_losslessly_through_json() -> None:
    story = rich_story()
    stored = story.state.to_dict()
    text = json.dumps(stored)
    loaded = AccountState.from_dict(json.loads(text))
    assert loaded == story.state
    assert loaded.to_dict() == stored
    assert loaded.recent_ids == story.state.recent_ids
    # ...and a closed account as well.
    story.update("p-a", "-99999.00")
    assert story.state.status == "closed"
    assert AccountState.from_dict(json.loads(json.dumps(story.state.to_dict()))) == story.state


def test_a_loaded_state_goes_on_exactly_like_the_original() -> None:
    story = rich_story()
    twin = AccountState.from_dict(story.state.to_dict())
    event = story.updated("p-b", "-50.00")
    a, b = handle(story.state, event), handle(twin, event)
    assert a.facts == b.facts
    assert story.state.to_dict() == twin.to_dict()
    assert handle(twin, event).duplicate


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d.update(format=99),
        lambda d: d.update(status="frozen"),
        lambda d: d.pop("account_id"),
        lambda d: d.update(realized_pnl_cents="12.00"),
        lambda d: d.update(version=True),
        lambda d: d["rule_status"].update(drawdown="meh"),
        lambda d: d["withdrawals"][0].update(status="lost"),
        lambda d: d["withdrawals"][0].update(amount_cents=1.5),
        lambda d: d["positions"][0].update(notional_cents=None),
        lambda d: d.update(updated_at="yesterday"),
    ],
)
def test_a_corrupt_stored_state_is_refused(corrupt) -> None:
    stored = rich_story().state.to_dict()
    corrupt(stored)
    with pytest.raises(CorruptState):
        AccountState.from_dict(stored)


def test_summary_has_the_fields_of_the_list_route() -> None:
    story = rich_story()
    summary = story.state.to_wire_summary()
    assert summary == {
        "id": story.account_id,
        "status": "active",
        "tier_id": "funded-100k",
        "activated_at": "2026-11-23T10:00:00Z",
        "closed_at": None,
        "closure_reason": None,
        "starting_balance": "100000.00",
        "current_balance": "159699.75",
        "peak_balance": "160000.00",
        "realized_pnl": "60000.00",
        "unrealized_pnl": "-300.25",
        "total_withdrawals": "300.00",
        # floor(0.8 x 59,699.75) = 47,759.80 - 300.00 paid - 2,500.00 reserved
        "withdrawable_amount": "44959.80",
        "withdrawals": {"pending": 1, "completed_total": "300.00"},
    }


def test_detail_adds_terms_positions_rules_and_updated_at() -> None:
    story = rich_story()
    detail = story.state.to_wire_detail()
    assert detail["user_id"] == USER
    assert detail["tier"] == story.tier.to_wire()
    assert detail["positions"] == [
        {
            "position_id": "p-a",
            "symbol": "EURUSD",
            "side": "long",
            "quantity": "2.5",
            "price": "1.0850",
            "notional": "1200.00",
            "unrealized_pnl": "-300.25",
            "opened_at": detail["positions"][0]["opened_at"],
        },
        {
            "position_id": "p-b",
            "symbol": "EURUSD",
            "side": "long",
            "quantity": "2.5",
            "price": "1.0850",
            "notional": "2000.00",
            "unrealized_pnl": "0.00",
            "opened_at": detail["positions"][1]["opened_at"],
        },
    ]
    assert detail["rules"] == {
        # (160,000.00 - 159,699.75) / 160,000.00 = 0.00187...
        # floor 160,000.00 x (1 - 0.10) = 144,000.00; remaining 159,699.75 - 144,000.00
        "drawdown": {
            "value": "0.0019",
            "threshold": "0.1000",
            "status": "safe",
            "remaining": "15699.75",
            "floor": "144000.00",
        },
        # 2,000.00 / 159,699.75 = 0.01252...; remaining 0.05 x 159,699.75 = 7,984.98 (rounded
        # down) - 2,000.00
        "risk_per_trade": {
            "value": "0.0125",
            "threshold": "0.0500",
            "status": "safe",
            "remaining": "5984.98",
            "floor": None,
        },
    }
    assert detail["updated_at"] == format_ts(story.clock)
    assert json.loads(json.dumps(detail)) == detail


def test_withdrawal_list_is_newest_first() -> None:
    story = rich_story()
    listed = story.state.withdrawals_wire()
    times = [w["requested_at"] for w in listed]
    assert times == sorted(times, reverse=True)
    assert {w["account_id"] for w in listed} == {story.account_id}
    assert set(listed[0]) == {
        "id",
        "account_id",
        "amount",
        "status",
        "requires_review",
        "requested_at",
        "approved_at",
        "approved_by",
        "completed_at",
        "rejected_at",
        "rejection_reason",
        "stripe_payout_id",
        "estimated_completion_at",
        "reversed_total",
    }


def test_every_fact_carries_the_common_fields() -> None:
    story = Story()
    facts: list[dict[str, object]] = []
    record = facts.extend
    assert story.last is not None
    record(story.last.facts)
    story.trade("20000.00")
    wid = story.withdraw("5000.00")
    record(story.last.facts)
    record(story.approve(wid).facts)
    record(story.paid(wid).facts)
    record(story.reversed(wid).facts)
    record(story.open("p-z", notional="9000.00").facts)
    assert {f["type"] for f in facts} >= {
        "funded-account.created",
        "funded-account.activated",
        "funded-account.closed",
        "rules.violation-detected",
        "rules.status-changed",
        "withdrawal.requested",
        "withdrawal.approved",
        "withdrawal.completed",
        "withdrawal.failed",
    }
    for fact in facts:
        assert {"event_id", "type", "occurred_at", "account_id", "user_id"} <= set(fact)
        assert fact["account_id"] == story.account_id and fact["user_id"] == USER
    assert len({f["event_id"] for f in facts}) == len(facts)


def test_reply_helpers() -> None:
    refused = Reply.refuse(Refusal(Code.BELOW_MINIMUM, "too small"))
    assert refused.to_wire() == {"error": {"code": "below_minimum", "message": "too small"}}
    assert type(refused.code) is str
    assert Outcome(None).changed is False


def test_commands_are_plain_values() -> None:
    story = Story()
    request = RequestWithdrawal(
        "c", story.account_id, USER, "w", 1, "stripe_connect", DESTINATION, T0
    )
    assert request.occurred_at == T0
    assert ApproveWithdrawal("c", "a", "w", "adm", T0).occurred_at == T0
    assert PayoutSucceeded("c", "a", "w", "tr", T0).occurred_at == T0
    assert isinstance(story.opened(), PositionOpened)


def test_an_id_entry_whose_value_was_lost_does_not_hide_the_input() -> None:
    """A crash can keep the applied-ids record of an input and lose the account value that
    applied it: the input is read again and must be applied, not taken for a duplicate."""
    story = Story()
    story.open("p-1")
    before = AccountState.from_dict(story.state.to_dict())
    lost = replace(story.updated("p-1", "25.00"), event_id="t-lost")
    story.send(lost)  # applied: its id entry is written (in story.memory)
    # The value write is lost: the account is back at `before`, the entry survived.
    entry = story.memory.seen(story.account_id, lost.event_id)
    assert entry is not None and entry.version == before.version + 1
    again = handle(before, lost, seen=entry)
    assert again.changed and not again.duplicate
    assert before.unrealized_pnl_cents == 25_00
    # Another input took that version in the surviving history: still not this input.
    other = Story()
    other.open("p-1")
    other.update("p-1", "5.00")  # version 3, as `lost` had
    assert other.state.version == entry.version
    assert handle(other.state, replace(lost, account_id=other.account_id), seen=entry).changed
