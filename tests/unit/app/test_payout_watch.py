"""Approved withdrawals are asked for again until they settle (agents/accounts.py)."""

from __future__ import annotations

from agents.accounts import PAYOUT_RESEND_SECONDS, PayoutWatch
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
