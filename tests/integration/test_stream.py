"""Stream processing on the real broker: activation, the account agent, rules, withdrawals,
payouts (through a recording Stripe double) and dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from app.settings import Settings
from app.tiers_seed import seed_tiers
from domain.state import AccountState
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until, worker_env
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream_prefix() -> str:
    return s.uid("st") + "."


@pytest.fixture(scope="module")
def worker(
    services: Services,
    stream_prefix: str,
    double: StripeDouble,
    module_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("stream")
    env = worker_env(
        services,
        stream_prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
    )
    asyncio.run(seed_tiers(Settings.from_env(env)))
    w = Worker(env, tmp / "data", tmp / "worker.log").start()
    asyncio.run(w.wait_ready())
    yield w
    w.stop()


@pytest.fixture
async def kafka(services: Services, stream_prefix: str, worker: Worker) -> AsyncIterator[Kafka]:
    k = Kafka(services, stream_prefix)
    k.workers.append(worker)
    await k.start()
    yield k
    await k.stop()


async def account_state(
    kafka: Kafka, acct: str, what: str = "account", check: Any = None, timeout: float = 90
) -> AccountState:
    async def probe() -> AccountState | None:
        kafka.check_workers()
        value = (await kafka.accounts()).get(acct)
        if value is None:
            return None
        st = AccountState.from_dict(value["state"])
        return st if check is None or check(st) else None

    return await wait_until(probe, timeout=timeout, what=what)


async def activate(kafka: Kafka, worker: Worker, user: str = "usr_1") -> str:
    asm = s.uid("asm")
    await kafka.send("assessment.completed", asm, s.assessment(asm, user=user))
    acct = s.account_of(asm)
    try:
        await account_state(kafka, acct, "activation")
    except AssertionError:
        raise AssertionError(worker.tail()) from None
    return acct


async def test_passed_assessment_three_times_gives_one_account(
    kafka: Kafka, worker: Worker
) -> None:
    asm = s.uid("asm")
    event = s.assessment(asm, user="usr_3x")
    for _ in range(3):
        await kafka.send("assessment.completed", asm, event)
    failed = s.uid("asm")
    await kafka.send("assessment.completed", failed, s.assessment(failed, status="failed"))
    acct = s.account_of(asm)
    st = await account_state(kafka, acct, "activation")
    assert st.status == "active" and st.user_id == "usr_3x"
    assert st.starting_balance_cents == 100_000_00 and st.peak_balance_cents == 100_000_00
    await asyncio.sleep(2)
    facts = await kafka.facts("funded-account.created", "funded-account.activated")
    mine = [f for f in facts if f["account_id"] == acct]
    assert Counter(f["type"] for f in mine) == {
        "funded-account.created": 1,
        "funded-account.activated": 1,
    }
    created = next(f for f in mine if f["type"] == "funded-account.created")
    assert created["assessment_id"] == asm and created["starting_balance"] == "100000.00"
    assert not [f for f in facts if f["account_id"] == s.account_of(failed)]
    assert s.account_of(failed) not in await kafka.accounts()


async def test_trades_move_balances_and_repeats_change_nothing(
    kafka: Kafka, worker: Worker
) -> None:
    acct = await activate(kafka, worker)
    open_p1 = s.opened(acct, "p-1", "2000.00")
    older_update = s.updated(acct, "p-1", "-1250.00", notional="1900.00")
    close_p2 = s.closed(acct, "p-2", "500.25")
    await kafka.send_many(
        [
            ("trades", acct, open_p1),
            ("trades", acct, older_update),
            ("trades", acct, s.opened(acct, "p-2", "3000.00")),
            ("trades", acct, close_p2),
            ("trades", acct, s.updated(acct, "p-1", "-800.00", notional="1950.00")),
            # The engine opens a new position under the closed one's id (the contract does
            # not make position ids unique forever), so a repeated close has a target.
            ("trades", acct, s.opened(acct, "p-2", "1000.00")),
            # Redeliveries: without the dedupe window the close would book its 500.25 a
            # second time (and close the new p-2), the older update would put p-1 back to
            # -1,250.00, and the repeated open would be dead-lettered as a duplicate position.
            ("trades", acct, close_p2),
            ("trades", acct, older_update),
            ("trades", acct, open_p1),
            # Same partition, so once this marker is applied every redelivery before it was.
            ("trades", acct, s.opened(acct, "p-3", "10.00")),
        ]
    )
    st = await account_state(kafka, acct, "trades applied", check=lambda st: "p-3" in st.positions)
    assert st.closed_positions_count == 1
    assert st.realized_pnl_cents == 500_25
    assert st.unrealized_pnl_cents == -800_00
    assert st.current_balance_cents == 100_000_00 + 500_25 - 800_00
    # The highest balance was 99,700.25 (after the newer update): never above the start.
    assert st.peak_balance_cents == 100_000_00
    assert sorted(st.positions) == ["p-1", "p-2", "p-3"]
    assert st.positions["p-1"].notional_cents == 1950_00
    assert st.positions["p-1"].unrealized_pnl_cents == -800_00
    assert st.positions["p-2"].notional_cents == 1000_00
    # A repeat is not bad input: it is dropped quietly, never dead-lettered.
    await asyncio.sleep(1)
    dead = [v for v, _ in await kafka.dead_letters("trades") if v and acct.encode() in v]
    assert dead == []


async def test_drawdown_breach_closes_and_rejects_pending(kafka: Kafka, worker: Worker) -> None:
    acct = await activate(kafka, worker)
    # Profit first so a large withdrawal can be pending when the breach comes.
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-1", "1000.00")),
            ("trades", acct, s.closed(acct, "p-1", "20000.00")),
        ]
    )
    await account_state(kafka, acct, "profit", check=lambda st: st.closed_positions_count == 1)
    wid = s.uid("w")
    await kafka.send("fundedflow.account-commands", acct, s.request(acct, wid, 5000_00))
    await account_state(kafka, acct, "pending withdrawal", check=lambda st: wid in st.withdrawals)
    # peak 120,000.00; the tier's drawdown is 10 %: 108,000.00 is exactly at the threshold.
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-2", "1000.00")),
            ("trades", acct, s.updated(acct, "p-2", "-9600.00")),  # 0.08 → 0.8: warning
            ("trades", acct, s.updated(acct, "p-2", "-11000.00")),  # 0.0917 → danger
            ("trades", acct, s.updated(acct, "p-2", "-12000.01")),  # past 0.10 → violation
        ]
    )
    st = await account_state(kafka, acct, "closure", check=lambda st: st.status == "closed")
    assert st.closure_reason == "rule_violation:drawdown"
    assert st.withdrawals[wid].status == "rejected"
    assert st.withdrawals[wid].rejection_reason == "account_closed"
    await asyncio.sleep(1.5)
    facts = [
        f
        for f in await kafka.facts(
            "rules.status-changed",
            "rules.violation-detected",
            "funded-account.closed",
            "withdrawal.rejected",
        )
        if f["account_id"] == acct
    ]
    changes = [
        (f["previous_status"], f["status"])
        for f in facts
        if f["type"] == "rules.status-changed" and f["rule"] == "drawdown"
    ]
    assert changes == [("safe", "warning"), ("warning", "danger"), ("danger", "violation")]
    # Each topic is read on its own here, so only what arrived is compared, not the order
    # across topics; the order of the facts one event causes is a domain unit test.
    rest = sorted(f["type"] for f in facts if f["type"] != "rules.status-changed")
    assert rest == ["funded-account.closed", "rules.violation-detected", "withdrawal.rejected"]
    assert len({f["occurred_at"] for f in facts if f["type"] != "rules.status-changed"}) == 1
    violation = next(f for f in facts if f["type"] == "rules.violation-detected")
    assert violation["rule"] == "drawdown" and violation["threshold"] == "0.1000"
    closed = next(f for f in facts if f["type"] == "funded-account.closed")
    assert closed["current_balance"] == "107999.99"
    # Liquidation still moves the balance; a new position is refused.
    await kafka.send_many(
        [
            ("trades", acct, s.closed(acct, "p-2", "-12500.00")),
            ("trades", acct, s.opened(acct, "p-3", "10.00")),
        ]
    )
    st = await account_state(kafka, acct, "liquidation", check=lambda st: not st.positions)
    assert st.realized_pnl_cents == 20_000_00 - 12_500_00 and st.status == "closed"
    dead = await wait_until(lambda: kafka.dead_letters("trades"), what="dead letter")
    assert any(reason.startswith("account_closed") for _, reason in dead)


async def test_risk_per_trade_breach(kafka: Kafka, worker: Worker) -> None:
    acct = await activate(kafka, worker)
    # Profit first (withdrawable 8,000.00) so a large withdrawal can wait for review.
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-0", "1000.00")),
            ("trades", acct, s.closed(acct, "p-0", "10000.00")),
        ]
    )
    await account_state(kafka, acct, "profit", check=lambda st: st.closed_positions_count == 1)
    wid = s.uid("w")
    await kafka.send("fundedflow.account-commands", acct, s.request(acct, wid, 1000_00))
    st = await account_state(
        kafka, acct, "pending withdrawal", check=lambda st: wid in st.withdrawals
    )
    assert st.withdrawals[wid].status == "pending"  # 1,000.00 is the first reviewed amount
    # 5 % of 110,000.00 is 5,500.00: 4,400.00 is at 0.8 of it (warning), a cent past it breaks.
    breach = s.opened(acct, "p-2", "5500.01")
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-1", "4400.00")),
            ("trades", acct, breach),
        ]
    )
    st = await account_state(kafka, acct, "closure", check=lambda st: st.status == "closed")
    assert st.closure_reason == "rule_violation:risk_per_trade"
    assert st.withdrawals[wid].status == "rejected"
    assert st.withdrawals[wid].rejection_reason == "account_closed"
    await asyncio.sleep(1.5)
    facts = [
        f
        for f in await kafka.facts(
            "rules.status-changed",
            "rules.violation-detected",
            "funded-account.closed",
            "withdrawal.rejected",
        )
        if f["account_id"] == acct
    ]
    assert [
        (f["previous_status"], f["status"])
        for f in facts
        if f["type"] == "rules.status-changed" and f["rule"] == "risk_per_trade"
    ] == [("safe", "warning"), ("warning", "violation")]
    rest = sorted(f["type"] for f in facts if f["type"] != "rules.status-changed")
    assert rest == ["funded-account.closed", "rules.violation-detected", "withdrawal.rejected"]
    v = next(f for f in facts if f["type"] == "rules.violation-detected")
    assert v["rule"] == "risk_per_trade" and v["value"] == "0.0500"
    assert v["threshold"] == "0.0500" and v["trigger_event_id"] == breach["event_id"]
    closed = next(f for f in facts if f["type"] == "funded-account.closed")
    assert closed["reason"] == "rule_violation:risk_per_trade"
    assert closed["current_balance"] == "110000.00" and closed["user_id"] == "usr_1"
    assert closed["closed_at"] == breach["occurred_at"]
    rejected = next(f for f in facts if f["type"] == "withdrawal.rejected")
    assert rejected["withdrawal_id"] == wid and rejected["reason"] == "account_closed"


async def profitable(kafka: Kafka, worker: Worker, profit: str = "10000.00") -> str:
    acct = await activate(kafka, worker)
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-1", "1000.00")),
            ("trades", acct, s.closed(acct, "p-1", profit)),
        ]
    )
    await account_state(kafka, acct, "profit", check=lambda st: st.closed_positions_count == 1)
    return acct


async def test_withdrawals_small_large_rejected_and_refused(
    kafka: Kafka, worker: Worker, double: StripeDouble
) -> None:
    acct = await profitable(kafka, worker)  # withdrawable 8,000.00
    small, large, rejected, refused = (s.uid(n) for n in ("small", "large", "rej", "refused"))
    await kafka.send_many(
        [
            ("fundedflow.account-commands", acct, s.request(acct, small, 250_00)),
            ("fundedflow.account-commands", acct, s.request(acct, large, 2000_00)),
            ("fundedflow.account-commands", acct, s.request(acct, rejected, 1000_00)),
            (
                "fundedflow.account-commands",
                acct,
                s.request(acct, refused, 300_00, destination="acct_refuseMe"),
            ),
        ]
    )
    st = await account_state(
        kafka,
        acct,
        "small completed, refused failed",
        check=lambda st: (
            st.withdrawals.get(small) is not None
            and st.withdrawals[small].status == "completed"
            and st.withdrawals.get(refused) is not None
            and st.withdrawals[refused].status == "failed"
        ),
    )
    assert st.withdrawals[small].stripe_payout_id.startswith("tr_double_")
    assert st.withdrawals[large].status == "pending"
    assert st.withdrawals[rejected].status == "pending"
    assert st.withdrawals[refused].rejection_reason.startswith("stripe_refused")
    # Paid 250, reserved 3,000: the refused 300 is withdrawable again.
    assert st.total_withdrawals_cents == 250_00
    assert st.withdrawable_cents == 8000_00 - 250_00 - 3000_00

    await kafka.send_many(
        [
            ("fundedflow.account-commands", acct, s.approve(acct, large)),
            ("fundedflow.account-commands", acct, s.reject(acct, rejected)),
        ]
    )
    st = await account_state(
        kafka,
        acct,
        "large completed",
        check=lambda st: (
            st.withdrawals[large].status == "completed"
            and st.withdrawals[rejected].status == "rejected"
        ),
    )
    assert st.withdrawals[large].approved_by == "adm_1"
    assert st.total_withdrawals_cents == 2250_00
    assert st.withdrawable_cents == 8000_00 - 2250_00
    assert double.created_per_withdrawal[small] == 1
    assert double.created_per_withdrawal[large] == 1
    assert double.created_per_withdrawal[rejected] == 0
    transfer = double.transfers[st.withdrawals[large].stripe_payout_id]
    assert transfer["amount"] == 2000_00 and transfer["currency"] == "usd"
    assert transfer["metadata"] == {"withdrawal_id": large, "account_id": acct, "user_id": "usr_1"}
    await asyncio.sleep(1)
    facts = [
        f
        for f in await kafka.facts(
            "withdrawal.requested",
            "withdrawal.approved",
            "withdrawal.completed",
            "withdrawal.rejected",
            "withdrawal.failed",
        )
        if f["account_id"] == acct
    ]
    by_w = {
        w: sorted(f["type"] for f in facts if f["withdrawal_id"] == w)
        for w in (small, large, rejected, refused)
    }
    paid = ["withdrawal.approved", "withdrawal.completed", "withdrawal.requested"]
    assert by_w[small] == paid and by_w[large] == paid
    assert by_w[rejected] == ["withdrawal.rejected", "withdrawal.requested"]
    assert by_w[refused] == ["withdrawal.approved", "withdrawal.failed", "withdrawal.requested"]


async def test_dead_letters_and_the_stream_goes_on(kafka: Kafka, worker: Worker) -> None:
    acct = await activate(kafka, worker)
    ghost = s.uid("fa_ghost")
    await kafka.send_many(
        [
            ("trades", acct, b"{not json"),
            ("trades", ghost, s.opened(ghost, "p-1", "10.00")),
            ("trades", acct, s.updated(acct, "p-404", "1.00")),
            ("trades", acct, {**s.opened(acct, "p-9", "10.00"), "notional": "1.005"}),
            ("assessment.completed", "asm-x", b"[]"),
            ("assessment.completed", "asm-y", s.assessment("asm-y", tier="no-such-tier")),
            ("trades", acct, s.opened(acct, "p-ok", "100.00")),
        ]
    )
    await account_state(
        kafka, acct, "valid trade after bad ones", check=lambda st: "p-ok" in st.positions
    )
    dead = await wait_until(lambda: _reasons(kafka, "trades", 4), what="four trade dead letters")
    joined = " | ".join(dead)
    for reason in ("invalid_event", "unknown_account", "unknown_position"):
        assert reason in joined, joined
    assert any(r.startswith("invalid_event") and "notional" in r for r in dead), joined
    asm_dead = await wait_until(
        lambda: _reasons(kafka, "assessment.completed", 2), what="assessment dead letters"
    )
    assert any("unknown_tier" in r for r in asm_dead)
    raw = [v for v, _ in await kafka.dead_letters("trades")]
    assert b"{not json" in raw  # the original bytes, untouched


async def _reasons(kafka: Kafka, base: str, at_least: int) -> list[str] | None:
    got = [r for _, r in await kafka.dead_letters(base)]
    return got if len(got) >= at_least else None
