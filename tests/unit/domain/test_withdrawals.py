"""Withdrawals (CONTRACT section 5): policy, state machine, payout results."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from domain.account import DictMemory, handle, payout_due
from domain.events import ApproveWithdrawal, RequestWithdrawal
from domain.state import CLOSED, MAX_OPEN_WITHDRAWALS, RECENT_SETTLED, AccountState
from domain.withdrawals import IllegalTransition, Withdrawal, transition
from tests.unit.domain.story import T0, Story, tier, types


def profitable(profit: str = "60000.00", **terms: object) -> Story:
    """An account with `profit` realized and no open positions."""
    story = Story(tier(**terms)) if terms else Story()
    story.trade(profit)
    return story


# --- the contract's worked example


def test_worked_example_from_the_contract() -> None:
    story = profitable("60000.00")  # split 0.80, start 100,000.00, current 160,000.00
    assert story.state.current_balance_cents == 160_000_00
    assert story.state.withdrawable_cents == 48_000_00
    wid = story.withdraw("40000.00")
    assert story.state.withdrawable_cents == 8_000_00  # reserved while pending
    story.approve(wid)
    assert story.state.withdrawable_cents == 8_000_00
    story.paid(wid)
    assert story.state.total_withdrawals_cents == 40_000_00
    assert story.state.withdrawable_cents == 8_000_00
    summary = story.state.to_wire_summary()
    assert summary["withdrawable_amount"] == "8000.00"
    assert summary["total_withdrawals"] == "40000.00"
    assert summary["withdrawals"] == {"pending": 0, "completed_total": "40000.00"}
    # The fix: the firm's share is never paid out by repeated withdrawals.
    story.withdraw("8000.00")
    assert story.state.withdrawable_cents == 0
    assert story.request("100.00").reply.code == "exceeds_withdrawable"  # type: ignore[union-attr]


def test_withdrawable_is_zero_on_a_loss_and_rounds_down() -> None:
    story = profitable("-500.00")
    assert story.state.withdrawable_cents == 0
    story = profitable("0.01")
    assert story.state.withdrawable_cents == 0  # 0.8 of a cent is not owed
    story = profitable("333.33", profit_split=Decimal("0.85"))
    assert story.state.withdrawable_cents == 283_33  # 283.3305 -> 283.33


# --- acceptance: auto approval and review


def test_below_one_thousand_is_approved_at_once() -> None:
    story = profitable()
    out = story.request("999.99")
    assert types(out) == ["withdrawal.requested", "withdrawal.approved"]
    requested, approved = out.facts
    assert requested["requires_review"] is False and requested["amount"] == "999.99"
    assert approved["approved_by"] == "auto" and approved["amount"] == "999.99"
    assert requested["withdrawal_id"] == approved["withdrawal_id"]
    assert requested["event_id"] != approved["event_id"]
    assert out.reply is not None and out.reply.accepted
    body = out.reply.withdrawal
    assert body is not None
    assert body["status"] == "approved" and body["approved_by"] == "auto"
    assert body["approved_at"] == body["requested_at"]
    assert body["estimated_completion_at"] == "2026-11-24T10:03:00Z"  # a day after approval
    assert story.state.reserved_cents == 999_99
    assert [w.withdrawal_id for w in payout_due(story.state)] == [body["id"]]


def test_one_thousand_or_more_waits_for_review() -> None:
    story = profitable()
    out = story.request("1000.00")
    assert types(out) == ["withdrawal.requested"]
    assert out.facts[0]["requires_review"] is True
    assert out.reply is not None and out.reply.withdrawal is not None
    body = out.reply.withdrawal
    assert body["status"] == "pending" and body["requires_review"] is True
    assert body["approved_at"] is None and body["approved_by"] is None
    assert body["estimated_completion_at"] == "2026-11-26T10:03:00Z"  # three days
    assert story.state.reserved_cents == 1000_00
    assert payout_due(story.state) == []
    assert story.state.to_wire_summary()["withdrawals"]["pending"] == 1


# --- refusals, each one and their order


@pytest.mark.parametrize(
    ("amount", "code"),
    [("99.99", "below_minimum"), ("0.00", "below_minimum"), ("-100.00", "below_minimum")],
)
def test_below_minimum(amount: str, code: str) -> None:
    story = profitable()
    assert story.request(amount).reply.code == code  # type: ignore[union-attr]
    assert story.request("100.00").reply.accepted  # type: ignore[union-attr]


def test_exceeds_withdrawable_to_the_cent_and_counts_reservations() -> None:
    story = profitable("10000.00")  # share 8,000.00
    out = story.request("8000.01")
    assert out.reply is not None and out.reply.code == "exceeds_withdrawable"
    assert "8000.01 exceeds the withdrawable 8000.00" in (out.reply.message or "")
    story.withdraw("5000.00")
    assert story.request("3000.01").reply.code == "exceeds_withdrawable"  # type: ignore[union-attr]
    story.withdraw("3000.00")
    assert story.state.withdrawable_cents == 0


@pytest.mark.parametrize("method", ["paypal", "STRIPE_CONNECT", "", "stripe_connect "])
def test_unsupported_payment_method(method: str) -> None:
    story = profitable()
    out = story.request("250.00", method=method)
    assert out.reply is not None and out.reply.code == "unsupported_payment_method"


@pytest.mark.parametrize(
    "destination", ["", "acct_", "acct_12-3", "ba_123", " acct_123", "acct_123\n", "ACCT_123"]
)
def test_invalid_destination(destination: str) -> None:
    story = profitable()
    out = story.request("250.00", destination=destination)
    assert out.reply is not None and out.reply.code == "invalid_destination"


def test_open_positions_block_a_request() -> None:
    story = profitable()
    story.open("p-1")
    assert story.request("250.00").reply.code == "open_positions"  # type: ignore[union-attr]
    story.close("p-1", "0.00")
    assert story.request("250.00").reply.accepted  # type: ignore[union-attr]


def test_min_trades_must_be_met() -> None:
    story = profitable(min_trades=2)  # one closed trade so far
    assert story.request("250.00").reply.code == "min_trades_not_met"  # type: ignore[union-attr]
    story.trade("0.00")
    assert story.request("250.00").reply.accepted  # type: ignore[union-attr]


def test_a_closed_account_cannot_withdraw() -> None:
    story = profitable()
    story.open("p-1", notional="9000.00")
    assert story.state.status == "closed"
    story.close("p-1", "0.00")
    assert story.request("250.00").reply.code == "account_not_active"  # type: ignore[union-attr]


def test_refusals_come_in_the_contracts_order() -> None:
    """Start with every rule broken; repair them one by one; the answer follows the order."""
    story = profitable("1000.00", min_trades=5)  # share 800.00
    story.open("p-open")
    state = story.state
    state.status = CLOSED
    expected = [
        "account_not_active",
        "open_positions",
        "min_trades_not_met",
        "below_minimum",
        "exceeds_withdrawable",
        "unsupported_payment_method",
        "invalid_destination",
    ]
    repairs = [
        lambda: setattr(state, "status", "active"),
        lambda: state.positions.clear(),
        lambda: setattr(state, "tier", replace(state.tier, min_trades=0)),
    ]
    kwargs: dict[str, str] = {"method": "wire", "destination": "iban"}
    amount = "50.00"
    for step, code in enumerate(expected):
        before = _business(state.to_dict())
        out = story.request(amount, **kwargs)
        assert out.reply is not None and not out.reply.accepted
        assert out.reply.code == code, (step, out.reply)
        assert out.facts == [] and out.dead_letter is None
        # A refusal changes nothing of the account; only its answer is kept (bookkeeping).
        assert _business(state.to_dict()) == before
        if step < len(repairs):
            repairs[step]()
        elif code == "below_minimum":
            amount = "900.00"
        elif code == "exceeds_withdrawable":
            amount = "800.00"
        elif code == "unsupported_payment_method":
            kwargs["method"] = "stripe_connect"
        else:
            kwargs["destination"] = "acct_1ok"
    assert story.request(amount, **kwargs).reply.accepted  # type: ignore[union-attr]


def test_another_users_request_is_refused_as_unknown_account() -> None:
    story = profitable()
    out = story.request("250.00", user_id="usr_evil")
    assert out.reply is not None and out.reply.code == "unknown_account"
    assert story.state.withdrawals == {}


# --- admin decisions


def test_admin_approval_of_a_pending_withdrawal() -> None:
    story = profitable()
    wid = story.withdraw("2500.00")
    out = story.approve(wid, admin="adm_9")
    assert types(out) == ["withdrawal.approved"]
    assert out.facts[0]["approved_by"] == "adm_9" and out.facts[0]["amount"] == "2500.00"
    assert out.reply is not None and out.reply.withdrawal is not None
    assert out.reply.withdrawal["status"] == "approved"
    assert out.reply.withdrawal["approved_by"] == "adm_9"
    assert out.reply.withdrawal["approved_at"] == "2026-11-23T10:04:00Z"
    assert out.reply.withdrawal["estimated_completion_at"] == "2026-11-24T10:04:00Z"
    assert out.reply.to_wire() == {"withdrawal": out.reply.withdrawal}
    assert [w.withdrawal_id for w in payout_due(story.state)] == [wid]


def test_approval_rechecks_the_amount_against_the_latest_profit() -> None:
    story = profitable("10000.00")  # share 8,000.00
    wid = story.withdraw("8000.00")
    story.trade("-0.02")  # share now 7,999.98: no longer covered
    out = story.approve(wid, admin="adm_9")
    assert types(out) == ["withdrawal.rejected"]
    assert out.facts[0]["reason"] == "exceeds_withdrawable"
    assert out.facts[0]["rejected_by"] == "adm_9"
    assert story.state.withdrawals[wid].status == "rejected"
    assert out.reply is not None and out.reply.accepted  # answered with the rejected withdrawal
    assert out.reply.withdrawal is not None and out.reply.withdrawal["status"] == "rejected"
    assert story.state.reserved_cents == 0


def test_approval_does_not_count_the_withdrawals_own_reservation() -> None:
    story = profitable("10000.00")
    wid = story.withdraw("8000.00")  # takes all of the share
    assert story.state.withdrawable_cents == 0
    assert story.approve(wid).facts[0]["type"] == "withdrawal.approved"


def test_approval_on_an_account_no_longer_active_rejects() -> None:
    story = profitable()
    wid = story.withdraw("2500.00")
    story.state.status = CLOSED  # as if closed by something that kept its pending withdrawals
    out = story.approve(wid)
    assert out.facts[0]["reason"] == "account_not_active"
    assert story.state.withdrawals[wid].rejection_reason == "account_not_active"


def test_admin_rejection() -> None:
    story = profitable()
    wid = story.withdraw("2500.00")
    out = story.reject(wid, reason="documents missing", admin="adm_2")
    assert types(out) == ["withdrawal.rejected"]
    assert out.facts[0]["reason"] == "documents missing"
    assert out.facts[0]["rejected_by"] == "adm_2"
    body = story.withdrawal(wid)
    assert body["status"] == "rejected" and body["rejection_reason"] == "documents missing"
    assert body["rejected_at"] == "2026-11-23T10:04:00Z"
    assert body["estimated_completion_at"] is None
    assert story.state.withdrawable_cents == 48_000_00


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_decisions_on_a_withdrawal_that_is_not_pending_are_refused(decide: str) -> None:
    story = profitable()
    auto = story.withdraw("500.00")
    reviewed = story.withdraw("5000.00")
    story.approve(reviewed)
    for wid in (auto, reviewed):
        before = story.state.to_dict()
        out = getattr(story, decide)(wid)
        assert out.reply is not None and out.reply.code == "not_pending"
        assert out.reply.to_wire()["error"]["code"] == "not_pending"
        assert out.facts == [] and not out.changed
        assert story.state.to_dict() == before


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_decisions_on_an_unknown_withdrawal_are_refused(decide: str) -> None:
    story = profitable()
    out = getattr(story, decide)("wd_nope")
    assert out.reply is not None and out.reply.code == "unknown_withdrawal"


# --- payout results


def test_payout_success_completes_and_counts_as_paid() -> None:
    story = profitable()
    wid = story.withdraw("500.00")
    out = story.paid(wid, "tr_1")
    assert types(out) == ["withdrawal.completed"]
    assert out.facts[0]["stripe_payout_id"] == "tr_1" and out.facts[0]["amount"] == "500.00"
    body = story.withdrawal(wid)
    assert body["status"] == "completed" and body["stripe_payout_id"] == "tr_1"
    assert body["completed_at"] == body["estimated_completion_at"] == "2026-11-23T10:04:00Z"
    assert story.state.total_withdrawals_cents == 500_00
    assert story.state.reserved_cents == 0
    assert payout_due(story.state) == []


def test_payout_failure_gives_the_amount_back() -> None:
    story = profitable()
    wid = story.withdraw("500.00")
    assert story.state.withdrawable_cents == 47_500_00
    out = story.payout_failed(wid, "account_invalid")
    assert types(out) == ["withdrawal.failed"]
    assert out.facts[0]["reason"] == "account_invalid"
    body = story.withdrawal(wid)
    assert body["status"] == "failed" and body["rejection_reason"] == "account_invalid"
    assert body["estimated_completion_at"] is None
    assert story.state.withdrawable_cents == 48_000_00
    assert story.state.total_withdrawals_cents == 0


def test_a_reversed_transfer_fails_a_completed_withdrawal_and_gives_the_amount_back() -> None:
    story = profitable()
    wid = story.withdraw("500.00")
    story.paid(wid, "tr_1")
    assert story.state.withdrawable_cents == 47_500_00
    out = story.reversed(wid, "tr_1")
    assert types(out) == ["withdrawal.reversed", "withdrawal.failed"]
    assert out.facts[0]["amount"] == "500.00" and out.facts[0]["reversed_total"] == "500.00"
    assert out.facts[1]["reason"] == "transfer_reversed"
    body = story.withdrawal(wid)
    assert body["status"] == "failed" and body["rejection_reason"] == "transfer_reversed"
    assert body["stripe_payout_id"] == "tr_1"
    assert story.state.total_withdrawals_cents == 0
    assert story.state.withdrawable_cents == 48_000_00


def test_repeated_payout_results_under_new_event_ids_are_duplicates() -> None:
    story = profitable()
    paid = story.withdraw("500.00")
    failed = story.withdraw("400.00")
    story.paid(paid, "tr_1")
    story.payout_failed(failed)
    before = story.state.to_dict()
    for out in (story.paid(paid, "tr_1"), story.payout_failed(failed)):
        assert out.duplicate and out.facts == [] and not out.changed
    story.reversed(paid, "tr_1")
    before = story.state.to_dict()
    for out in (story.reversed(paid, "tr_1"), story.paid(paid, "tr_1")):
        assert out.duplicate and out.facts == []
    assert story.state.to_dict() == before


def _pending_rejected_completed_failed(story: Story) -> dict[str, str]:
    ids = {
        "pending": story.withdraw("2000.00"),
        "rejected": story.withdraw("3000.00"),
        "approved": story.withdraw("100.00"),
        "completed": story.withdraw("200.00"),
        "failed": story.withdraw("300.00"),
    }
    story.reject(ids["rejected"])
    story.paid(ids["completed"])
    story.payout_failed(ids["failed"])
    return ids


@pytest.mark.parametrize(
    ("step", "status"),
    [
        ("paid", "pending"),
        ("paid", "rejected"),
        ("paid", "failed"),
        ("payout_failed", "pending"),
        ("payout_failed", "rejected"),
        ("payout_failed", "completed"),
        ("reversed", "pending"),
        ("reversed", "rejected"),
        ("reversed", "failed"),
    ],
)
def test_illegal_payout_transitions_are_dead_lettered(step: str, status: str) -> None:
    story = profitable()
    ids = _pending_rejected_completed_failed(story)
    before = story.state.to_dict()
    out = getattr(story, step)(ids[status])
    assert out.dead_letter == "illegal_transition", (out.dead_letter, out.detail)
    assert out.facts == [] and not out.changed and not out.duplicate
    assert story.state.to_dict() == before


def test_a_completed_withdrawal_paid_by_another_transfer_is_dead_lettered() -> None:
    story = profitable()
    wid = story.withdraw("500.00")
    story.paid(wid, "tr_1")
    assert story.paid(wid, "tr_2").dead_letter == "illegal_transition"
    assert story.reversed(wid, "tr_2").dead_letter == "transfer_mismatch"


@pytest.mark.parametrize("step", ["paid", "payout_failed", "reversed"])
def test_payout_results_for_unknown_withdrawals_are_dead_lettered(step: str) -> None:
    story = profitable()
    assert getattr(story, step)("wd_ghost").dead_letter == "unknown_withdrawal"


def test_the_state_machine_itself_refuses_illegal_moves() -> None:
    w = Withdrawal("wd_1", "usr_42", 500_00, "pending", True, "stripe_connect", "acct_1", T0)
    approved = transition(w, "approved", approved_at=T0, approved_by="adm")
    with pytest.raises(IllegalTransition, match="approved to approved"):
        transition(approved, "approved")
    rejected = transition(w, "rejected", rejected_at=T0, rejection_reason="no")
    with pytest.raises(IllegalTransition, match="rejected to completed"):
        transition(rejected, "completed")
    with pytest.raises(IllegalTransition, match="pending to failed"):
        transition(w, "failed")
    with pytest.raises(IllegalTransition, match="pending to completed"):
        transition(w, "completed")
    completed = transition(approved, "completed", completed_at=T0 + timedelta(hours=1))
    failed = transition(completed, "failed", rejection_reason="transfer_reversed")
    with pytest.raises(IllegalTransition):
        transition(failed, "completed")


# --- redelivered commands


def test_a_redelivered_request_is_answered_with_the_same_withdrawal() -> None:
    story = profitable()
    command = story.requested("2500.00", "wd_1")
    first = story.send(command)
    before = story.state.to_dict()
    again = story.send(command)
    assert again.duplicate and again.facts == [] and not again.changed
    assert again.reply == first.reply
    story.approve("wd_1")
    third = story.send(command)
    assert third.reply is not None and third.reply.withdrawal is not None
    assert third.reply.withdrawal["status"] == "approved"  # as it stands now
    assert before["version"] + 1 == story.state.version


def test_a_retried_request_with_a_new_event_id_creates_nothing_new() -> None:
    story = profitable()
    first = story.request("2500.00", "wd_1")
    retry = story.request("2500.00", "wd_1")
    assert retry.duplicate and retry.facts == []
    assert retry.reply == first.reply
    assert len(story.state.withdrawals) == 1


def test_a_redelivered_approval_is_answered_with_the_withdrawal() -> None:
    story = profitable()
    wid = story.withdraw("2500.00")
    command = ApproveWithdrawal("cmd-x", story.account_id, wid, "adm_1", story.tick())
    story.send(command)
    again = handle(story.state, command)
    assert again.duplicate and again.facts == []
    assert again.reply is not None and again.reply.withdrawal is not None
    assert again.reply.withdrawal["status"] == "approved"


def test_another_user_cannot_read_a_withdrawal_by_reusing_its_id() -> None:
    story = profitable()
    story.request("2500.00", "wd_1")
    out = story.request("2500.00", "wd_1", user_id="usr_evil")
    assert out.reply is not None and out.reply.code == "unknown_account"
    assert out.reply.withdrawal is None and not out.duplicate


def _business(stored: dict[str, object]) -> dict[str, object]:
    """The stored state without the bookkeeping of which inputs were seen."""
    return {k: v for k, v in stored.items() if k not in ("recent_ids", "version")}


def test_a_refused_request_read_again_gets_the_same_refusal() -> None:
    story = Story()
    story.trade("1000.00")  # 800.00 withdrawable
    request = story.requested("900.00", withdrawal_id="w-big")
    first = story.send(request)
    assert first.reply is not None and first.reply.code == "exceeds_withdrawable"
    assert first.changed and not first.facts
    story.trade("5000.00")  # now 900.00 would be covered
    # The same message read again (a restart after a crash): the answer it already had.
    again = handle(story.state, request)
    assert again.duplicate and again.reply is not None and not again.facts
    assert (again.reply.accepted, again.reply.code) == (False, "exceeds_withdrawable")
    assert "w-big" not in story.state.withdrawals
    assert AccountState.from_dict(story.state.to_dict()).recent_ids == story.state.recent_ids
    # A new request (a new event id) is decided afresh.
    assert story.request("900.00").reply.accepted  # type: ignore[union-attr]


def test_refusals_never_evict_trade_ids_however_many() -> None:
    """Hardening defect 2: refused requests (free for the trader while Redis is down) used to
    share a 10,000-slot window with trade ids, so enough of them made a redelivered trade count
    again. Now nothing is evicted from the applied-ids memory."""
    story = Story()
    story.open("p-1")
    closing = story.closed("p-1", "1000.00")
    story.send(closing)
    realized = story.state.realized_pnl_cents
    for _ in range(12_000):
        assert story.request("50.00").reply.code == "below_minimum"  # type: ignore[union-attr]
    again = story.send(closing)  # the trading engine redelivers the close
    assert again.duplicate and not again.changed
    assert story.state.realized_pnl_cents == realized == 1000_00


def test_a_refusal_repeated_with_other_terms_is_a_reused_key() -> None:
    """Hardening defect 7: after Redis lost the answer, the same key (same withdrawal id, so
    the same event id) with another body is another request: 409, not the stale 422."""
    story = Story()
    story.trade("1000.00")

    def keyed(amount: str) -> RequestWithdrawal:
        # As views/accounts.py builds it: the event id comes from the key's withdrawal id.
        return replace(story.requested(amount, withdrawal_id="w-k"), event_id="request:w-k")

    first = story.send(keyed("900.00"))
    assert first.reply is not None and first.reply.code == "exceeds_withdrawable"
    same = story.send(keyed("900.00"))
    assert same.reply is not None and same.reply.code == "exceeds_withdrawable"
    other = story.send(keyed("500.00"))
    assert other.reply is not None and other.reply.code == "idempotency_key_reused"
    assert "w-k" not in story.state.withdrawals


def test_an_accepted_request_repeated_with_other_terms_is_a_reused_key() -> None:
    story = profitable()
    story.request("500.00", "wd_1")
    other = story.request("600.00", "wd_1")
    assert other.reply is not None and other.reply.code == "idempotency_key_reused"
    assert story.state.withdrawals["wd_1"].amount_cents == 500_00


def test_open_withdrawals_are_capped() -> None:
    story = profitable()
    for _ in range(MAX_OPEN_WITHDRAWALS):
        assert story.request("2000.00").reply.accepted  # type: ignore[union-attr]
    out = story.request("2000.00")
    assert out.reply is not None and out.reply.code == "too_many_open_withdrawals"


def test_settled_withdrawals_leave_the_value_for_the_archive() -> None:
    story = profitable()
    wids = []
    for _ in range(RECENT_SETTLED + 5):
        wid = story.withdraw("100.00")
        story.paid(wid)
        wids.append(wid)
    kept = [w for w in story.state.withdrawals]
    assert len(kept) == RECENT_SETTLED and kept == wids[-RECENT_SETTLED:]
    for wid in wids[:5]:
        assert story.memory.archived(story.account_id, wid) is not None
        assert story.memory.archived(story.account_id, wid).status == "completed"  # type: ignore[union-attr]
    assert story.state.total_withdrawals_cents == 100_00 * len(wids)


def test_archives_of_two_accounts_never_mix_under_one_withdrawal_id() -> None:
    """Command ids are the caller's: two accounts may archive the same withdrawal id, and a
    late reversal on one must find its own withdrawal, never the other's."""
    memory = DictMemory()
    first = Story(memory=memory, assessment_id="asm_a")
    second = Story(memory=memory, assessment_id="asm_b")
    for story, amount in ((first, "100.00"), (second, "300.00")):
        story.trade("60000.00")
        story.request(amount, "wd_same")
        story.paid("wd_same")
        for _ in range(RECENT_SETTLED):  # push wd_same out to the archive
            story.paid(story.withdraw("100.00"))
        assert "wd_same" not in story.state.withdrawals
    a = memory.archived(first.account_id, "wd_same")
    b = memory.archived(second.account_id, "wd_same")
    assert a is not None and b is not None
    assert (a.amount_cents, b.amount_cents) == (100_00, 300_00)
    paid_before = first.state.total_withdrawals_cents
    first.reversed("wd_same", amount_reversed="100.00")
    assert first.state.total_withdrawals_cents == paid_before - 100_00
    assert memory.archived(second.account_id, "wd_same").status == "completed"  # type: ignore[union-attr]


# --- reversals (hardening defects 1 and 8) -------------------------------------------------------


def test_a_partial_reversal_gives_back_exactly_the_reversed_cents() -> None:
    story = profitable()  # 48,000.00 withdrawable
    wid = story.withdraw("2000.00")
    story.approve(wid)
    story.paid(wid, "tr_1")
    assert story.state.withdrawable_cents == 46_000_00
    out = story.reversed(wid, "tr_1", amount_reversed="1.00")
    assert types(out) == ["withdrawal.reversed"]
    assert (out.facts[0]["amount"], out.facts[0]["reversed_total"]) == ("1.00", "1.00")
    body = story.withdrawal(wid)
    assert body["status"] == "completed" and body["reversed_total"] == "1.00"
    assert story.state.withdrawable_cents == 46_001_00
    assert story.state.total_withdrawals_cents == 1999_00
    # Stripe's figure is cumulative: 500.00 in all gives back 499.00 more.
    out = story.reversed(wid, "tr_1", amount_reversed="500.00")
    assert (out.facts[0]["amount"], out.facts[0]["reversed_total"]) == ("499.00", "500.00")
    assert story.state.withdrawable_cents == 46_500_00
    # A stale or repeated figure gives nothing back.
    stale = story.reversed(wid, "tr_1", amount_reversed="300.00")
    assert stale.duplicate and not stale.facts
    assert story.state.withdrawable_cents == 46_500_00
    # The rest: fully reversed, the withdrawal fails.
    out = story.reversed(wid, "tr_1", amount_reversed="2000.00")
    assert types(out) == ["withdrawal.reversed", "withdrawal.failed"]
    assert out.facts[0]["amount"] == "1500.00"
    assert story.withdrawal(wid)["status"] == "failed"
    assert story.state.withdrawable_cents == 48_000_00
    assert story.state.total_withdrawals_cents == 0


def test_a_reversal_before_the_payout_result_is_kept_and_applied_after() -> None:
    story = profitable()
    wid = story.withdraw("500.00")  # approved, transfer on its way
    early = story.reversed(wid, "tr_1", amount_reversed="200.00")
    assert early.changed and not early.dead_letter and not early.facts
    assert story.withdrawal(wid)["status"] == "approved"
    out = story.paid(wid, "tr_1")
    assert types(out) == ["withdrawal.completed", "withdrawal.reversed"]
    body = story.withdrawal(wid)
    assert body["status"] == "completed" and body["reversed_total"] == "200.00"
    assert story.state.total_withdrawals_cents == 300_00
    assert story.state.withdrawable_cents == 48_000_00 - 300_00


def test_a_full_reversal_before_the_payout_result_fails_it_after() -> None:
    story = profitable()
    wid = story.withdraw("500.00")
    story.reversed(wid, "tr_1", amount_reversed="500.00")
    out = story.paid(wid, "tr_1")
    assert types(out) == ["withdrawal.completed", "withdrawal.reversed", "withdrawal.failed"]
    assert story.withdrawal(wid)["status"] == "failed"
    assert story.state.withdrawable_cents == 48_000_00


def test_a_reversal_of_an_archived_withdrawal_is_applied() -> None:
    story = profitable()
    first = story.withdraw("500.00")
    story.paid(first, "tr_first")
    for _ in range(RECENT_SETTLED + 1):
        story.paid(story.withdraw("100.00"))
    assert first not in story.state.withdrawals
    before = story.state.withdrawable_cents
    out = story.reversed(first, "tr_first", amount_reversed="100.00")
    assert types(out) == ["withdrawal.reversed"]
    assert story.state.withdrawable_cents == before + 100_00
    assert story.withdrawal(first)["reversed_total"] == "100.00"
