"""Approved withdrawals are asked for again until they settle (agents/accounts.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from agents.accounts import PAYOUT_RESEND_SECONDS, AccountProcessor, PayoutWatch
from tables.accounts import dump
from tests.unit.domain.story import Story


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_approved_withdrawal_is_due_again_until_it_settles() -> None:
    story = Story(assessment_id="asm-watch")
    story.open("p-1")
    story.close("p-1", "5000.00")
    story.request("250.00")  # under 1,000.00: approved at once
    (wid,) = list(story.state.withdrawals)
    clock = Clock()
    watch = PayoutWatch(clock)

    watch.note(story.state)
    assert watch.due() == []
    clock.now += PAYOUT_RESEND_SECONDS - 1
    watch.note(story.state)  # seen again: the first sighting still counts
    assert watch.due() == []
    clock.now += 1
    assert watch.due() == [(wid, story.account_id)]

    watch.asked_again(wid, story.account_id)
    assert watch.due() == []
    clock.now += PAYOUT_RESEND_SECONDS
    assert watch.due() == [(wid, story.account_id)]

    story.paid(wid)
    watch.note(story.state)
    assert watch.due() == [] and watch.asked == {}


def test_a_pending_withdrawal_is_not_asked_for() -> None:
    story = Story(assessment_id="asm-watch-2")
    story.open("p-1")
    story.close("p-1", "5000.00")
    story.request("2000.00")  # pending review
    clock = Clock()
    watch = PayoutWatch(clock)
    watch.note(story.state)
    clock.now += 10 * PAYOUT_RESEND_SECONDS
    assert watch.due() == []


class RawStore:
    """What sweep_approved reads of a Faust RocksDB store: raw items of the active partitions."""

    def __init__(self, values: dict[str, dict[str, Any]]) -> None:
        self.raw = {k.encode(): json.dumps(v).encode() for k, v in values.items()}

    def _iteritems(self) -> Any:
        return iter(self.raw.items())

    def _decode_value(self, value: bytes) -> Any:
        return json.loads(value)


def test_the_sweep_after_recovery_watches_every_approved_withdrawal_of_idle_accounts() -> None:
    """A payout request lost around a crash, on an account that never trades again, is asked
    for again: the sweep at recovery finds the approved withdrawal without any new event."""
    approved, pending, none = (Story(assessment_id=f"asm-sweep-{i}") for i in range(3))
    for story in (approved, pending, none):
        story.open("p-1")
        story.close("p-1", "5000.00")
    approved.request("250.00")  # approved at once, its payout never made
    pending.request("2000.00")  # waits for an admin: not a payout to ask for
    store = RawStore({s.account_id: dump(s.state, []) for s in (approved, pending, none)})
    processor = AccountProcessor.__new__(AccountProcessor)
    processor.table = SimpleNamespace(data=store)
    clock = Clock()
    processor.payout_watch = PayoutWatch(clock)
    assert processor.sweep_approved() == 1
    clock.now += PAYOUT_RESEND_SECONDS
    (wid,) = list(approved.state.withdrawals)
    assert processor.payout_watch.due() == [(wid, approved.account_id)]
    assert processor.sweep_approved() == 0  # already watched: noted once
