"""Properties over random interleavings of trades and withdrawal commands."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.account import DictMemory, Outcome, step
from domain.events import (
    ActivateAccount,
    ApproveWithdrawal,
    Command,
    PayoutFailed,
    PayoutSucceeded,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RejectWithdrawal,
    RequestWithdrawal,
    ReverseTransfer,
    TradeEvent,
)
from domain.money import (
    InvalidAmount,
    format_cents,
    format_ratio,
    parse_money,
    split_round_down,
)
from domain.rulepacks import VIOLATION
from domain.state import AccountState
from domain.tiers import Tier, parse_tier
from tests.unit.domain.story import DESTINATION, T0, USER, tier

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TIERS = [
    tier(),  # the contract's funded-100k: accounts close often
    tier(max_drawdown=Decimal(1), max_risk_per_trade=Decimal(1)),  # survives long stories
    tier(
        tier_id="funded-10k",
        starting_balance_cents=10_000_00,
        profit_split=Decimal("0.9"),
        max_drawdown=Decimal("0.5"),
        max_risk_per_trade=Decimal("0.5"),
        min_trades=2,
    ),
    # Rule packs (CONTRACT section 4a): every rule on, a daily loss that locks, gates that
    # most requests pass ...
    parse_tier(
        {
            "tier_id": "pack-every-rule",
            "name": "Every rule",
            "starting_balance": "100000.00",
            "profit_split": "0.80",
            "rules": {
                "max_loss": {
                    "mode": "trailing_eod",
                    "limit": "0.20",
                    "lock_at": "starting_balance",
                },
                "daily_loss": {
                    "limit": "0.05",
                    "anchor": "max",
                    "reset_tz": "America/Chicago",
                    "reset_at": "17:00",
                    "action": "lock",
                },
                "risk_per_trade": {"limit": "0.08"},
                "consistency": {"max_best_day_share": "0.90"},
                "min_trading_days": 1,
                "min_winning_days": {"days": 1, "min_profit": "10.00"},
                "payout_interval_days": 0,
            },
        }
    ),
    # ... and one whose daily loss closes, with gates that refuse more often.
    parse_tier(
        {
            "tier_id": "pack-static",
            "name": "Static",
            "starting_balance": "50000.00",
            "profit_split": "0.90",
            "rules": {
                "max_loss": {"mode": "trailing", "amount": "10000.00"},
                "daily_loss": {
                    "amount": "8000.00",
                    "anchor": "balance",
                    "reset_tz": "Europe/Prague",
                    "action": "close",
                },
                "consistency": {"max_best_day_share": "0.50"},
                "min_trading_days": 2,
                "payout_interval_days": 1,
            },
        }
    ),
]

# Ops refer to existing positions and withdrawals by index (modulo what exists), so random
# scripts reach deep states: profits, approvals, payouts, reversals, closures.
# Hypothesis favours small and extreme integers; representative values keep scripts moving
# (profits large enough to withdraw, notionals around the risk bands, amounts around the
# minimum and the review threshold) while the integer ranges still explore the edges.
index = st.integers(0, 7)
pnl = st.sampled_from([-5_000_00, -1_234_56, -1, 0, 1, 999_99, 5_000_00, 12_345_67]) | st.integers(
    -5_000_00, 25_000_00
)
notional = st.sampled_from([0, 100_00, 1_000_00, 3_999_99, 4_000_00, 4_500_00, 5_000_01]) | (
    st.integers(0, 7_000_00)
)
amounts = st.sampled_from([99_99, 100_00, 500_00, 999_99, 1_000_00, 2_500_00, 9_000_00]) | (
    st.integers(50_00, 30_000_00)
)
transfer = st.sampled_from(["own", "own", "own", "other"])
# Stripe's cumulative reversed figure: a cent, part of the transfer, all of it, or more.
reversed_amount = st.sampled_from([1, 100_00, 10**9]) | st.integers(1, 30_000_00)


trade = st.tuples(st.just("trade"), pnl, notional)
request = st.tuples(
    st.just("request"),
    amounts,
    st.sampled_from(["stripe_connect"] * 5 + ["paypal"]),
    st.sampled_from([DESTINATION] * 5 + ["iban_1"]),
    st.none() | index,  # None: a new withdrawal id; else retry an existing one
)
ops = st.one_of(
    trade,
    trade,
    trade,
    st.tuples(st.just("open"), notional),
    st.tuples(st.just("flat")),
    st.tuples(st.just("update"), index, st.integers(-20_000_00, 20_000_00), st.none() | notional),
    st.tuples(st.just("close"), index, pnl),
    st.tuples(st.just("flat")),
    request,
    request,
    request,
    request,
    request,
    st.tuples(st.just("approve"), index),
    st.tuples(st.just("approve"), index),
    st.tuples(st.just("approve"), index),
    st.tuples(st.just("reject"), index),
    st.tuples(st.just("paid"), index, transfer),
    st.tuples(st.just("paid"), index, transfer),
    st.tuples(st.just("payout_failed"), index),
    st.tuples(st.just("reverse"), index, transfer, reversed_amount),
    st.tuples(st.just("repeat"), st.integers(0, 1000)),
    st.tuples(st.just("ghost")),  # inputs about things that do not exist
)

# Half the scripts start with a good profit, so withdrawals get past the early refusals.
scripts = st.tuples(
    st.sampled_from([[], [("trade", 30_000_00, 1_000_00)]]),
    st.lists(ops, min_size=15, max_size=50),
).map(lambda parts: parts[0] + parts[1])

# Withdrawal-heavy scripts: every position closes at once, so requests get past the early
# checks and the state machine is exercised in depth.
big_amounts = st.sampled_from([5_000_00, 10_000_00, 20_000_00, 24_000_00]) | st.integers(
    1_000_00, 30_000_00
)
withdrawal_ops = st.one_of(
    trade,
    st.tuples(st.just("trade"), st.integers(-30_000_00, -1), st.just(100_00)),  # losses
    request,
    request,
    st.tuples(
        st.just("request"),
        big_amounts,
        st.just("stripe_connect"),
        st.just(DESTINATION),
        st.none(),
    ),
    st.tuples(st.just("approve"), index),
    st.tuples(st.just("reject"), index),
    st.tuples(st.just("paid"), index, transfer),
    st.tuples(st.just("payout_failed"), index),
    st.tuples(st.just("reverse"), index, transfer, reversed_amount),
    st.tuples(st.just("repeat"), st.integers(0, 1000)),
)
withdrawal_scripts = st.lists(withdrawal_ops, min_size=10, max_size=40).map(
    lambda tail: [("trade", 30_000_00, 1_000_00), *tail]
)

Message = Command | TradeEvent


@dataclass
class Run:
    terms: Tier
    account_id: str = "fa_prop"
    sent: list[Message] = field(default_factory=list)
    seq: int = 0

    def activation(self) -> ActivateAccount:
        return ActivateAccount("act", self.account_id, USER, "asm_prop", self.terms, T0)

    def _next(self) -> tuple[str, Any]:
        # 37 minutes apart: a script spans days, so rule packs roll over (and end locks).
        self.seq += 1
        return f"e-{self.seq}", T0 + timedelta(minutes=37 * self.seq)

    def build(self, op: tuple[Any, ...], state: AccountState) -> list[Message]:
        kind = op[0]
        account = self.account_id
        open_ids = list(state.positions)
        wd_ids = list(state.withdrawals)

        def position(k: int) -> str:
            return open_ids[k % len(open_ids)] if open_ids else "p-none"

        def wd(k: int) -> str:
            return wd_ids[k % len(wd_ids)] if wd_ids else "wd-none"

        if kind == "repeat":
            return [self.sent[op[1] % len(self.sent)]] if self.sent else []
        if kind == "trade":
            event_id, at = self._next()
            opened = PositionOpened(
                event_id,
                account,
                f"p-{self.seq}",
                "EURUSD",
                "long",
                Decimal(1),
                Decimal(1),
                op[2],
                at,
            )
            close_id, close_at = self._next()
            return [opened, PositionClosed(close_id, account, opened.position_id, op[1], close_at)]
        if kind == "flat":
            messages: list[Message] = []
            for position_id in open_ids:
                event_id, at = self._next()
                messages.append(PositionClosed(event_id, account, position_id, 0, at))
            return messages
        event_id, at = self._next()
        if kind == "ghost":
            return [PositionUpdated(event_id, account, "p-ghost", 1, None, at)]
        if kind == "open":
            return [
                PositionOpened(
                    event_id,
                    account,
                    f"p-{self.seq}",
                    "EURUSD",
                    "short",
                    Decimal("0.5"),
                    Decimal(2),
                    op[1],
                    at,
                )
            ]
        if kind == "update":
            return [PositionUpdated(event_id, account, position(op[1]), op[2], op[3], at)]
        if kind == "close":
            return [PositionClosed(event_id, account, position(op[1]), op[2], at)]
        if kind == "request":
            withdrawal_id = f"wd-{self.seq}" if op[4] is None else wd(op[4])
            return [
                RequestWithdrawal(event_id, account, USER, withdrawal_id, op[1], op[2], op[3], at)
            ]
        if kind == "approve":
            return [ApproveWithdrawal(event_id, account, wd(op[1]), "adm", at)]
        if kind == "reject":
            return [RejectWithdrawal(event_id, account, wd(op[1]), "adm", "no", at)]
        if kind == "payout_failed":
            return [PayoutFailed(event_id, account, wd(op[1]), "card_declined", at)]
        withdrawal_id = wd(op[1])
        transfer_id = f"tr_{withdrawal_id}" if op[2] == "own" else "tr_other"
        if kind == "paid":
            return [PayoutSucceeded(event_id, account, withdrawal_id, transfer_id, at)]
        return [ReverseTransfer(event_id, account, withdrawal_id, transfer_id, op[3], at)]


# A rule-pack book's highest closing balance is None until a day has closed.
_NULLABLE_CENTS = frozenset({"highest_closed_balance_cents"})


def _all_cents_are_ints(value: Any) -> bool:
    if isinstance(value, dict):
        return all(
            (
                not key.endswith("_cents")
                or type(item) is int
                or (key in _NULLABLE_CENTS and item is None)
            )
            and _all_cents_are_ints(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_all_cents_are_ints(item) for item in value)
    return True


def _money_strings_are_exact(facts: list[dict[str, Any]]) -> bool:
    for fact in facts:
        for key in ("amount", "starting_balance", "current_balance"):
            if key in fact and format_cents(parse_money(fact[key])) != fact[key]:
                return False
    return True


def check_invariants(state: AccountState, peaks: list[int], memory: DictMemory) -> None:
    stored = state.to_dict()
    assert _all_cents_are_ints(stored)
    for name in (
        "starting_balance_cents",
        "realized_pnl_cents",
        "peak_balance_cents",
        "total_withdrawals_cents",
        "current_balance_cents",
        "unrealized_pnl_cents",
        "reserved_cents",
        "withdrawable_cents",
    ):
        assert type(getattr(state, name)) is int, name
    # Balances are the sum of their parts.
    unrealized = sum(p["unrealized_pnl_cents"] for p in stored["positions"])
    current = stored["starting_balance_cents"] + stored["realized_pnl_cents"] + unrealized
    assert state.current_balance_cents == current
    peaks.append(current)
    assert state.peak_balance_cents == max([state.starting_balance_cents, *peaks])
    assert state.peak_balance_cents >= state.current_balance_cents
    assert state.peak_balance_cents >= state.starting_balance_cents
    # Paid and reserved are the sums of the withdrawals in those states.
    # Every withdrawal: those in the value and those archived after they settled.
    every = {**memory.settled(state.account_id), **state.withdrawals}
    by_status: dict[str, int] = {}
    for w in every.values():
        by_status[w.status] = by_status.get(w.status, 0) + w.amount_cents
        assert w.amount_cents >= 100_00
        assert 0 <= w.reversed_cents <= w.amount_cents
        assert (w.reversed_cents == w.amount_cents) == (w.rejection_reason == "transfer_reversed")
    reversed_partly = sum(w.reversed_cents for w in every.values() if w.status == "completed")
    assert state.total_withdrawals_cents == by_status.get("completed", 0) - reversed_partly
    assert state.reserved_cents == by_status.get("pending", 0) + by_status.get("approved", 0)
    assert state.withdrawable_cents >= 0
    # The withdrawable amount, recomputed from the stored parts (CONTRACT section 5, fixed).
    share = split_round_down(state.tier.profit_split, current - state.starting_balance_cents)
    paid = by_status.get("completed", 0) - reversed_partly
    assert state.withdrawable_cents == max(0, share - paid - state.reserved_cents)
    # The stored form is lossless.
    assert AccountState.from_dict(json.loads(json.dumps(stored))).to_dict() == stored


def play(
    terms: Tier, script: list[tuple[Any, ...]], memory: DictMemory | None = None
) -> tuple[AccountState, list[Outcome]]:
    run = Run(terms)
    memory = DictMemory() if memory is None else memory
    first = step(None, run.activation(), memory)
    memory.record(run.activation(), first)
    state = first.state
    assert state is not None
    outcomes = [first]
    peaks: list[int] = []
    floors: list[int] = []
    was_closed = False
    messages = (message for op in script for message in run.build(op, state))
    for message in messages:
        run.sent.append(message)
        before = state.to_dict()
        outcome = step(state, message, memory)
        memory.record(message, outcome)
        outcomes.append(outcome)
        assert outcome.state is state
        if not outcome.changed:
            # Refused, dead-lettered or a duplicate: nothing moved, nothing published.
            assert outcome.facts == []
            assert state.to_dict() == before
        else:
            assert state.version == before["version"] + 1
        assert _money_strings_are_exact(outcome.facts)
        # At every approval, paid + reserved is covered by the trader's share right then.
        if any(f["type"] == "withdrawal.approved" for f in outcome.facts):
            share = split_round_down(terms.profit_split, state.profit_cents)
            assert state.total_withdrawals_cents + state.reserved_cents <= share
        # Applying the same input again changes nothing and publishes nothing.
        after = state.to_dict()
        again = step(state, message, memory)
        assert not again.changed and again.facts == []
        assert state.to_dict() == after
        # A closed account never reopens.
        was_closed = was_closed or state.status == "closed"
        assert state.status == ("closed" if was_closed else "active")
        check_invariants(state, peaks, memory)
        check_rule_invariants(state, floors)
    return state, outcomes


def check_rule_invariants(state: AccountState, floors: list[int]) -> None:
    """The rules' readings: a loss rule breaks exactly when equity < floor; an active
    account's stored statuses are those of its current figures; a max-loss floor never moves
    down; a lock only on a day that broke, on an active account."""
    readings = state.readings()
    equity = state.current_balance_cents
    for reading in readings.values():
        if reading.floor_cents is not None:
            assert (reading.status == VIOLATION) == (equity < reading.floor_cents)
            assert reading.remaining_cents == equity - reading.floor_cents
    if state.is_active:
        assert (
            state.rule_status
            == state.rule_statuses()
            == {rule: r.status for rule, r in readings.items()}
        )
    book = state.book
    if book is None:
        return
    floor = readings["max_loss"].floor_cents if "max_loss" in readings else None
    if floor is not None:
        assert not floors or floor >= floors[-1]
        floors.append(floor)
    if book.locked_until is not None:
        assert book.daily_breached and book.locked_until == book.day_end


@PROPERTY_SETTINGS
@given(st.sampled_from(TIERS), scripts)
def test_random_interleavings_keep_the_books_straight(
    terms: Tier, script: list[tuple[Any, ...]]
) -> None:
    state, outcomes = play(terms, script)
    facts = [fact for outcome in outcomes for fact in outcome.facts]
    # Fact ids are unique: each names one fact of one cause.
    assert len({f["event_id"] for f in facts}) == len(facts)
    # The core is deterministic: the same inputs give the same state and the same facts.
    replay_state, replay_outcomes = play(terms, script)
    assert replay_state.to_dict() == state.to_dict()
    assert [o.facts for o in replay_outcomes] == [o.facts for o in outcomes]


@PROPERTY_SETTINGS
@given(st.sampled_from(TIERS), withdrawal_scripts)
def test_withdrawal_heavy_interleavings_never_overpay(
    terms: Tier, script: list[tuple[Any, ...]]
) -> None:
    memory = DictMemory()
    state, outcomes = play(terms, script, memory)
    every = {**memory.settled(state.account_id), **state.withdrawals}
    # Each withdrawal's published history is a path of the state machine: at most one
    # completion (one transfer), reversals only after it, and nothing after a rejection or a
    # failure. Repeated partial reversals count as one step of the path.
    legal_paths = [
        [
            "withdrawal.requested",
            "withdrawal.approved",
            "withdrawal.completed",
            "withdrawal.reversed",
            "withdrawal.failed",
        ],
        ["withdrawal.requested", "withdrawal.approved", "withdrawal.failed"],
        ["withdrawal.requested", "withdrawal.rejected"],
    ]
    histories: dict[str, list[str]] = {}
    for outcome in outcomes:
        for fact in outcome.facts:
            if fact["type"].startswith("withdrawal."):
                histories.setdefault(fact["withdrawal_id"], []).append(fact["type"])
    assert set(histories) == set(every)
    for withdrawal_id, full in histories.items():
        history = [t for i, t in enumerate(full) if i == 0 or t != full[i - 1]]
        assert any(path[: len(history)] == history for path in legal_paths), full
        final = {
            "withdrawal.requested": "pending",
            "withdrawal.approved": "approved",
            "withdrawal.completed": "completed",
            "withdrawal.reversed": "completed",
            "withdrawal.failed": "failed",
            "withdrawal.rejected": "rejected",
        }[history[-1]]
        assert every[withdrawal_id].status == final


@PROPERTY_SETTINGS
@given(st.integers(-(10**16) + 1, 10**16 - 1))
def test_money_text_round_trips(cents: int) -> None:
    assert parse_money(format_cents(cents)) == cents


@PROPERTY_SETTINGS
@given(st.text(max_size=30) | st.floats(allow_nan=True) | st.decimals(allow_nan=True))
def test_money_parsing_refuses_by_name_never_by_accident(value: object) -> None:
    try:
        cents = parse_money(value)
    except InvalidAmount as exc:
        assert exc.reason
    else:
        assert type(cents) is int and abs(cents) < 10**16


@PROPERTY_SETTINGS
@given(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1), places=4),
    st.integers(-(10**15), 10**15),
)
def test_the_split_never_rounds_in_the_traders_favour(split: Decimal, profit: int) -> None:
    share = split_round_down(split, profit)
    exact = split * profit  # exact: 4 decimals times an integer fits the default context
    assert share <= exact < share + 1
    assert format_ratio(split) == f"{split:.4f}"
