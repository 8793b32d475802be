"""A worker killed with SIGKILL in the middle of a stream, then restarted.

Forty accounts get a seeded stream of about 4,000 trade events plus withdrawal requests and
admin decisions. The worker is killed (SIGKILL) while it is working through the stream and is
started again on the same data directory while the rest keeps arriving. Afterwards:

- every account's state in the changelog equals a replay of the very same input sequence
  through the pure core (`domain.account.handle`) in this process;
- every fact topic holds exactly the facts of that replay by `event_id` (repeats allowed only
  byte for byte: at-least-once), in the order they happened per account;
- every withdrawal produced at most one transfer at the recording Stripe double, and exactly
  one for every withdrawal the replay approved;
- the trade dead letters are those of the replay (by event id).

The worker runs with BROKER_SESSION_TIMEOUT=6 (Faust reads it from the environment): with the
default 60 s, the restarted worker waits that long for its dead predecessor to leave the group.

Keeping the replay honest
-------------------------
* Kafka orders one partition, not two topics: a withdrawal request on the commands topic may be
  consumed before a trade published earlier on `trades`. So that the worker's order is the
  published order, the publisher only switches an account from one topic to the other once the
  changelog shows that the account has applied everything published before (a live tail of the
  changelog, `ChangelogTail`). Inputs that change nothing (repeated trades, dead letters) are
  order-insensitive. A refused request is remembered with its answer, so one read again after
  the crash gets the same refusal (the last test here checks that on its own).
* Payout results (`payout_succeeded`) are commands the worker makes itself, with the clock's
  time and Stripe's transfer id. The replay applies the same commands, with the transfer id and
  time the worker recorded, at the place in the account's sequence where the worker applied
  them (its `applied_event_ids`). Each transfer id is then checked against the double, which
  saw the transfer made: amount, destination, metadata, one per withdrawal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.codec import dumps, loads_object
from app.settings import Settings
from app.tiers_seed import seed_tiers
from app.topics import ACCOUNT_COMMANDS, FACT_TOPICS, TRADES
from domain.account import Outcome, handle
from domain.events import (
    ActivateAccount,
    PayoutSucceeded,
    activation_for,
    parse_assessment,
    parse_command,
    parse_trade,
)
from domain.state import AccountState
from domain.tiers import Tier, default_catalog
from domain.timestamps import format_ts, parse_ts
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until, worker_env
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

SEED = 20261125
ACCOUNTS = 40
TRADES_PER_ACCOUNT = (85, 115)
# Accounts pushed through a drawdown breach half-way: closure, liquidation, dead letters.
DOOMED = {3, 17, 29}
PAYOUT_PREFIX = "payout-result:"
STALL_SECONDS = 20
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=s.T0.tzinfo)


@dataclass
class Input:
    topic: str  # TRADES or ACCOUNT_COMMANDS
    value: bytes
    event_id: str
    # How many inputs of this account the pure core applied before this one (activation is 1).
    applied_before: int


@dataclass
class Script:
    account_id: str
    user_id: str
    assessment: dict[str, Any]
    activation_event_id: str = ""
    inputs: list[Input] = field(default_factory=list)
    applied_total: int = 0
    # Ids of the inputs the pure core applies, in order (the activation first).
    applied_ids: list[str] = field(default_factory=list)


# --- the seeded stream ---------------------------------------------------------------------------


def _tier() -> Tier:
    return next(t for t in default_catalog() if t.tier_id == "funded-100k")


def activation_command(script: Script) -> ActivateAccount:
    a = parse_assessment(script.assessment)
    assert a.completed_at is not None
    return ActivateAccount(
        event_id=script.activation_event_id,
        account_id=script.account_id,
        user_id=a.user_id,
        assessment_id=a.assessment_id,
        tier=_tier(),
        activated_at=a.completed_at,
    )


def parse_input(inp: Input) -> Any:
    obj = loads_object(inp.value)
    return parse_trade(obj) if inp.topic == TRADES else parse_command(obj)


def generate(script: Script, index: int, refusals: bool = False) -> None:
    """The account's inputs, decided against a shadow state so that most of them make sense.

    With `refusals`, some requests ask for more than is withdrawable (refused, changing
    nothing), each followed at once by an accepted one on the same topic.
    """
    rng = random.Random(SEED * 1000 + index)
    acct, user = script.account_id, script.user_id
    state: AccountState | None = handle(None, activation_command(script)).state
    assert state is not None
    applied = 1
    script.applied_ids = [script.activation_event_id]
    clock = T0 + timedelta(days=1, seconds=index)
    sent_trades: list[bytes] = []
    counters = Counter[str]()

    def stamp() -> datetime:
        nonlocal clock
        clock += timedelta(seconds=rng.randint(1, 90))
        return clock

    def add(topic: str, wire: dict[str, Any] | bytes) -> Outcome:
        nonlocal state, applied
        raw = wire if isinstance(wire, bytes) else dumps(wire)
        obj = loads_object(raw)
        inp = Input(topic, raw, str(obj["event_id"]), applied)
        outcome = handle(state, parse_input(inp))
        if outcome.changed:
            state = outcome.state
            applied += 1
            script.applied_ids.append(inp.event_id)
        script.inputs.append(inp)
        if topic == TRADES:
            sent_trades.append(raw)
        return outcome

    def next_id(kind: str) -> str:
        counters[kind] += 1
        return f"{kind}-{index}-{counters[kind]}"

    n_trades = rng.randint(*TRADES_PER_ACCOUNT)
    doom_at = n_trades // 2 if index in DOOMED else -1
    trades = 0
    ghosts: list[str] = []  # positions opened after the closure: dead-lettered
    while trades < n_trades:
        assert state is not None
        r = rng.random()
        pending = [w for w in state.withdrawals.values() if w.status == "pending"]
        if pending and r < 0.08:
            w = pending[0]
            if rng.random() < 0.8:
                add(ACCOUNT_COMMANDS, s.approve(acct, w.withdrawal_id, at=stamp()))
            else:
                add(ACCOUNT_COMMANDS, s.reject(acct, w.withdrawal_id, "docs", at=stamp()))
            continue
        available = state.withdrawable_cents
        if state.is_active and not state.positions and available >= 100_00 and r < 0.6:
            if refusals and rng.random() < 0.25:
                # Refused (exceeds_withdrawable) and always followed by an accepted request on
                # the same topic, so its place relative to trades cannot matter.
                wid = next_id("w")
                out = add(
                    ACCOUNT_COMMANDS,
                    s.request(acct, wid, available + rng.randint(1, 500_00), user, at=stamp()),
                )
                assert not out.facts and out.reply and out.reply.code == "exceeds_withdrawable"
            if available >= 1000_00 and rng.random() < 0.4:
                amount = rng.randint(1000_00, min(available, 4000_00))
            else:
                amount = rng.randint(100_00, min(available, 999_99))
            out = add(ACCOUNT_COMMANDS, s.request(acct, next_id("w"), amount, user, at=stamp()))
            assert out.changed, out
            continue
        trades += 1
        if sent_trades and r > 0.985:
            add(TRADES, rng.choice(sent_trades))  # a producer's redelivery: changes nothing
            continue
        at = format_ts(stamp())
        if trades == doom_at and state.is_active:
            if not state.positions:
                add(
                    TRADES,
                    {**s.opened(acct, next_id("p"), "1000.00", next_id("t")), "occurred_at": at},
                )
            pid = next(iter(state.positions))
            loss = -(state.current_balance_cents // 7)  # about 14 % down: past the 10 % drawdown
            add(
                TRADES,
                {**s.updated(acct, pid, _money(loss), None, next_id("t")), "occurred_at": at},
            )
            assert not state.is_active
            continue
        if not state.is_active:
            if state.positions and rng.random() < 0.8:
                pid = rng.choice(sorted(state.positions))
                if rng.random() < 0.5:
                    pnl = _money(rng.randint(-1500_00, 1500_00))
                    wire = s.updated(acct, pid, pnl, None, next_id("t"))
                else:
                    wire = s.closed(acct, pid, _money(rng.randint(-2000_00, 500_00)), next_id("t"))
            elif ghosts and rng.random() < 0.5:
                wire = s.updated(acct, rng.choice(ghosts), "1.00", None, next_id("t"))
            else:
                ghosts.append(next_id("p"))
                wire = s.opened(acct, ghosts[-1], "500.00", next_id("t"))
            add(TRADES, {**wire, "occurred_at": at})
            continue
        n_open = len(state.positions)
        r2 = rng.random()
        if n_open == 0 or (n_open < 3 and r2 < 0.2):
            size = _money(rng.randint(300_00, 4700_00))
            wire = s.opened(acct, next_id("p"), size, next_id("t"))
        elif r2 < 0.65:
            pid = rng.choice(sorted(state.positions))
            pnl = _money(rng.randint(-1500_00, 1800_00))
            notional = _money(rng.randint(300_00, 4700_00)) if rng.random() < 0.3 else None
            wire = s.updated(acct, pid, pnl, notional, next_id("t"))
        else:
            pid = rng.choice(sorted(state.positions))
            realized = state.positions[pid].unrealized_pnl_cents + rng.randint(-200_00, 200_00)
            wire = s.closed(acct, pid, _money(realized), next_id("t"))
        add(TRADES, {**wire, "occurred_at": at})
    script.applied_total = applied


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


# --- the pure replay -----------------------------------------------------------------------------


@dataclass
class Expected:
    state: AccountState
    facts: list[dict[str, Any]]
    dead_letters: list[str]  # event ids of trades the core dead-letters
    approved: list[str]  # withdrawals the core approved: each needs exactly one transfer


def replay(script: Script, worker_state: dict[str, Any]) -> Expected:
    """The script through `handle`, with the worker's payout results where it applied them."""
    withdrawals = {w["withdrawal_id"]: w for w in worker_state["withdrawals"]}
    results_after: dict[int, list[str]] = defaultdict(list)
    seen = 0
    for eid in worker_state["applied_event_ids"]:
        if eid.startswith(PAYOUT_PREFIX):
            results_after[seen].append(eid)
        else:
            seen += 1

    facts: list[dict[str, Any]] = []
    dead: list[str] = []
    approved: list[str] = []
    state: AccountState | None = None
    applied = 0  # inputs applied, payout results aside (the worker's count is the same)

    def apply(message: Any) -> Outcome:
        nonlocal state, applied
        outcome = handle(state, message)
        if outcome.changed:
            state = outcome.state
            facts.extend(outcome.facts)
            approved.extend(
                f["withdrawal_id"] for f in outcome.facts if f["type"] == "withdrawal.approved"
            )
            if not isinstance(message, PayoutSucceeded):
                applied += 1
                for eid in results_after.pop(applied, []):
                    apply(payout_result(script.account_id, eid, withdrawals))
        return outcome

    apply(activation_command(script))
    for inp in script.inputs:
        outcome = apply(parse_input(inp))
        if outcome.dead_letter:
            dead.append(inp.event_id)
    assert state is not None
    assert not results_after, f"payout results the replay could not place: {dict(results_after)}"
    return Expected(state, facts, dead, approved)


def payout_result(account_id: str, eid: str, withdrawals: dict[str, Any]) -> PayoutSucceeded:
    wid = eid[len(PAYOUT_PREFIX) :]
    w = withdrawals.get(wid)
    assert w is not None and w["status"] == "completed", (wid, w)
    assert w["stripe_payout_id"] and w["completed_at"], w
    return PayoutSucceeded(
        event_id=eid,
        account_id=account_id,
        withdrawal_id=wid,
        stripe_transfer_id=w["stripe_payout_id"],
        at=parse_ts(w["completed_at"]),
    )


# --- a live view of the changelog ----------------------------------------------------------------


class ChangelogTail:
    """Follows the accounts changelog: per account, how many inputs (payout results aside)
    it has applied, as Kafka has them (not as the worker's local store has them)."""

    def __init__(self, services: Services, topic: str, partitions: int) -> None:
        self.services = services
        self.topic = topic
        self.partitions = partitions
        self.states: dict[str, dict[str, Any]] = {}
        self.applied: dict[str, int] = {}
        self.records = 0
        self.went_back: list[tuple[str, int, int]] = []

    def total(self) -> int:
        return sum(self.applied.values())

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.services.kafka, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    for r in records:
                        if r.key is None or r.value is None:
                            continue
                        self.records += 1
                        acct = json.loads(r.key)
                        state = json.loads(r.value)["state"]
                        n = sum(
                            1 for e in state["applied_event_ids"] if not e.startswith(PAYOUT_PREFIX)
                        )
                        if n < self.applied.get(acct, 0):
                            self.went_back.append((acct, self.applied[acct], n))
                        self.applied[acct] = n
                        self.states[acct] = state
        finally:
            await consumer.stop()


# --- the publisher -------------------------------------------------------------------------------


class Publisher:
    """Publishes every script, a few inputs per account per round, at a pace the worker can
    follow; an account switches topic only once the changelog shows it caught up."""

    def __init__(self, kafka: Kafka, tail: ChangelogTail, scripts: list[Script]) -> None:
        self.kafka = kafka
        self.tail = tail
        self.scripts = scripts
        self.next = {sc.account_id: 0 for sc in scripts}
        self.total = sum(len(sc.inputs) for sc in scripts)
        self.published = 0
        self.blocked_rounds = 0
        self.progress_at = time.monotonic()

    def stuck(self) -> dict[str, str]:
        """Accounts waiting to switch topic, and where the worker's sequence left the core's."""
        out = {}
        for sc in self.scripts:
            i = self.next[sc.account_id]
            if i < len(sc.inputs) and not self._publishable(sc, i):
                out[sc.account_id] = divergence(sc, self.tail.states.get(sc.account_id))
        return out

    def _publishable(self, sc: Script, i: int) -> bool:
        inp = sc.inputs[i]
        previous = sc.inputs[i - 1].topic if i else ACCOUNT_COMMANDS  # the activation
        return (
            inp.topic == previous or self.tail.applied.get(sc.account_id, 0) >= inp.applied_before
        )

    async def run(self, per_round: int = 3, pause: float = 0.08) -> None:
        self.progress_at = time.monotonic()
        while self.published < self.total:
            batch: list[tuple[str, str, bytes]] = []
            for sc in self.scripts:
                i = self.next[sc.account_id]
                taken = 0
                while i < len(sc.inputs) and taken < per_round and self._publishable(sc, i):
                    batch.append((sc.inputs[i].topic, sc.account_id, sc.inputs[i].value))
                    i += 1
                    taken += 1
                self.next[sc.account_id] = i
            if batch:
                await self.kafka.send_many(batch)
                self.published += len(batch)
                self.progress_at = time.monotonic()
            else:
                self.blocked_rounds += 1
            await asyncio.sleep(pause)


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture
async def setup(
    services: Services,
    double: StripeDouble,
    module_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Kafka, Worker]]:
    prefix = s.uid("crash") + "."
    tmp = tmp_path_factory.mktemp("crash")
    env = worker_env(
        services,
        prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
        # Faust's default 60 s session timeout would keep the restarted worker waiting for the
        # dead member of its group; the broker's minimum is 6 s.
        BROKER_SESSION_TIMEOUT="6",
        BROKER_HEARTBEAT_INTERVAL="1",
    )
    await seed_tiers(Settings.from_env(env))
    worker = Worker(env, tmp / "data", tmp / "worker.log").start()
    kafka = Kafka(services, prefix)
    kafka.workers.append(worker)
    await kafka.start()
    try:
        await worker.wait_ready()
        yield kafka, worker
    finally:
        await kafka.stop()
        worker.stop()


async def test_sigkill_mid_stream_then_restart(
    setup: tuple[Kafka, Worker], double: StripeDouble
) -> None:
    kafka, worker = setup
    started = time.monotonic()
    partitions = int(worker.env["TOPIC_PARTITIONS"])
    tail = ChangelogTail(kafka.services, f"{kafka.prefix}fundedflow-accounts-changelog", partitions)
    tail_task = asyncio.create_task(tail.run())
    try:
        scripts = await activate_all(kafka, tail)
        for i, sc in enumerate(scripts):
            generate(sc, i, refusals=True)
        publisher = Publisher(kafka, tail, scripts)
        expected_applied = sum(sc.applied_total for sc in scripts)
        n_trades = sum(1 for sc in scripts for i in sc.inputs if i.topic == TRADES)
        n_commands = publisher.total - n_trades
        assert n_trades >= 3500 and n_commands >= 200, (n_trades, n_commands)

        publishing = asyncio.create_task(publisher.run())

        # Kill once the stream is well under way: ~40 % published and the worker busy with it.
        def mid_stream() -> bool:
            kafka.check_workers()
            return (
                publisher.published >= 0.4 * publisher.total
                and tail.total() >= 0.3 * expected_applied
            )

        await wait_until(mid_stream, timeout=60, interval=0.05, what="the stream under way")
        killed_at = (publisher.published, tail.total())
        worker.kill()
        assert killed_at[0] < publisher.total and killed_at[1] < expected_applied
        await asyncio.sleep(1.0)  # inputs keep arriving while it is down
        worker.start()
        await worker.wait_ready()
        restarted_after = time.monotonic() - started

        while not publishing.done():
            kafka.check_workers()
            if time.monotonic() - publisher.progress_at > STALL_SECONDS:
                publishing.cancel()
                stuck = publisher.stuck()
                worker.stop()  # to read its local store
                local = local_applied(worker.data_dir, set(stuck))
                raise AssertionError(
                    f"publishing stalled at {publisher.published}/{publisher.total}: accounts "
                    "whose changelog never showed what was published before a topic switch: "
                    f"{stuck}; inputs applied in the worker's local store: {local}. A local "
                    "store ahead of the changelog means writes that died with the killed worker "
                    "were never stored again: the re-read input is a duplicate, and the "
                    "duplicate branch of agents/accounts.py does not write the value again. "
                    "Local store as far behind: inputs lost before the agent (app/worker.py)."
                )
            await asyncio.sleep(0.2)
        await publishing
        await wait_caught_up(kafka, tail, scripts)
        await asyncio.sleep(1.0)  # let any repeated fact of the restart land

        accounts = await kafka.accounts()
        fact_records = await kafka.read_all(FACT_TOPICS)
        dlq_records = await kafka.read_all([f"{TRADES}.dlq"])
    finally:
        tail_task.cancel()
        await asyncio.gather(tail_task, return_exceptions=True)

    # 1. States: the worker's equal the pure replay of the same inputs.
    expected: dict[str, Expected] = {}
    mismatched: dict[str, list[str]] = {}
    for sc in scripts:
        worker_state = accounts[sc.account_id]["state"]
        exp = replay(sc, worker_state)
        expected[sc.account_id] = exp
        want = json.loads(dumps(exp.state.to_dict()))
        got = json.loads(dumps(worker_state))
        if got != want:
            mismatched[sc.account_id] = [k for k in want if want.get(k) != got.get(k)]
    assert not mismatched, f"states differing from the replay (fields): {mismatched}"

    # 2. Facts: exactly the replay's, by event_id; repeats only byte for byte; order per account.
    by_topic: dict[str, dict[str, bytes]] = defaultdict(dict)
    order: dict[tuple[str, str], list[str]] = defaultdict(list)
    duplicates: Counter[str] = Counter()
    for topic, key, value, _ in fact_records:
        assert value is not None and key is not None
        fact = json.loads(value)
        base = topic[len(kafka.prefix) :]
        assert fact["type"] == base and key.decode() == fact["account_id"], (topic, fact)
        first = by_topic[base].get(fact["event_id"])
        if first is None:
            by_topic[base][fact["event_id"]] = value
            order[(base, fact["account_id"])].append(fact["event_id"])
        else:
            assert first == value, (
                f"two different payloads under one event_id:\n{first!r}\n{value!r}"
            )
            duplicates[base] += 1
    want_facts: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    want_order: dict[tuple[str, str], list[str]] = defaultdict(list)
    for acct, exp in expected.items():
        for f in exp.facts:
            assert f["event_id"] not in want_facts[f["type"]], f"replay repeats a fact id: {f}"
            want_facts[f["type"]][f["event_id"]] = json.loads(dumps(f))
            want_order[(f["type"], acct)].append(f["event_id"])
    for base in FACT_TOPICS:
        got_ids, want_ids = set(by_topic[base]), set(want_facts[base])
        assert got_ids == want_ids, (
            f"{base}: {len(want_ids - got_ids)} missing, {len(got_ids - want_ids)} unexpected"
        )
        for eid, raw in by_topic[base].items():
            assert json.loads(raw) == want_facts[base][eid], (base, raw)
    assert dict(order) == dict(want_order), "facts of an account out of order"

    # 3. Dead letters: the trades the core dead-letters, and only those.
    dead_ids = {loads_object(v)["event_id"] for _, _, v, _ in dlq_records}
    want_dead = {eid for exp in expected.values() for eid in exp.dead_letters}
    assert dead_ids == want_dead

    # 4. Transfers: at most one per withdrawal, exactly one for each the replay approved, and
    # each the one the account recorded.
    assert all(n <= 1 for n in double.created_per_withdrawal.values()), {
        w: n for w, n in double.created_per_withdrawal.items() if n > 1
    }
    approved_total = 0
    for acct, exp in expected.items():
        for wid in exp.approved:
            approved_total += 1
            w = exp.state.withdrawals[wid]
            assert w.status == "completed", (wid, w.status)
            assert double.created_per_withdrawal[wid] == 1, wid
            transfer = double.transfers[w.stripe_payout_id]
            assert transfer["amount"] == w.amount_cents and transfer["currency"] == "usd"
            assert transfer["destination"] == w.destination
            assert transfer["metadata"] == {
                "withdrawal_id": wid,
                "account_id": acct,
                "user_id": w.user_id,
            }
    assert sum(double.created_per_withdrawal.values()) == approved_total

    # The stream had something at stake on both sides of the kill.
    statuses = Counter(w.status for e in expected.values() for w in e.state.withdrawals.values())
    closed = sum(1 for e in expected.values() if not e.state.is_active)
    assert statuses["completed"] >= 40 and statuses["pending"] + statuses["rejected"] >= 5
    assert closed >= len(DOOMED) and want_dead
    print(
        f"\ncrash test: {publisher.total} inputs ({n_trades} trades, {n_commands} commands), "
        f"killed at {killed_at[0]} published / {killed_at[1]} applied of {expected_applied}, "
        f"worker back after {restarted_after:.1f}s; withdrawals {dict(statuses)}, "
        f"{closed} accounts closed, {len(want_dead)} trade dead letters "
        f"({len(dlq_records)} records); duplicate facts {dict(duplicates) or 0}; "
        f"stripe requests {double.requests}; changelog records {tail.records}, "
        f"went back {tail.went_back or 'never'}; publisher blocked rounds "
        f"{publisher.blocked_rounds}; total {time.monotonic() - started:.1f}s"
    )
    assert not tail.went_back, f"changelog moved an account backwards: {tail.went_back}"


async def activate_all(kafka: Kafka, tail: ChangelogTail) -> list[Script]:
    scripts = []
    for i in range(ACCOUNTS):
        asm = f"asm-crash-{i:02d}"
        sc = Script(
            s.account_of(asm), f"usr_crash_{i:02d}", s.assessment(asm, f"usr_crash_{i:02d}")
        )
        scripts.append(sc)
    await kafka.send_many(
        [("assessment.completed", sc.assessment["assessment_id"], sc.assessment) for sc in scripts]
    )

    def all_active() -> bool:
        kafka.check_workers()
        return all(tail.applied.get(sc.account_id, 0) >= 1 for sc in scripts)

    await wait_until(all_active, timeout=60, interval=0.1, what="40 activations")
    tier = _tier()
    for sc in scripts:
        first = tail.states[sc.account_id]["applied_event_ids"][0]
        assessment = parse_assessment(sc.assessment)
        derived = activation_for(assessment, tier)
        assert derived is not None
        # The activation's id must come from the assessment alone (stable across redelivery).
        assert first in (f"activate:{assessment.assessment_id}", derived.event_id), first
        sc.activation_event_id = first
    return scripts


async def wait_caught_up(kafka: Kafka, tail: ChangelogTail, scripts: list[Script]) -> None:
    """Until the changelog shows every input applied and no payout in flight."""

    def behind() -> dict[str, str]:
        out = {}
        for sc in scripts:
            got = tail.applied.get(sc.account_id, 0)
            state = tail.states.get(sc.account_id, {})
            paying = any(w["status"] == "approved" for w in state.get("withdrawals", []))
            if got != sc.applied_total or paying:
                out[sc.account_id] = divergence(sc, state)
        return out

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kafka.check_workers()
        if not behind():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the changelog never caught up with the inputs: {behind()}")


def local_applied(data_dir: Path, account_ids: set[str]) -> dict[str, int]:
    """Inputs (payout results aside) each account has applied in a stopped worker's RocksDB."""
    from rocksdict import AccessType, Options, Rdict

    out: dict[str, int] = {}
    for path in sorted(data_dir.glob("v1/tables/accounts-*.db")):
        db = Rdict(str(path), access_type=AccessType.read_only(), options=Options(raw_mode=True))
        try:
            for key, value in db.items():
                if not isinstance(key, bytes) or not key.startswith(b'"'):
                    continue  # Faust's own keys (the persisted changelog offset)
                if json.loads(key) in account_ids:
                    ids = json.loads(bytes(value))["state"]["applied_event_ids"]
                    out[json.loads(key)] = sum(1 for e in ids if not e.startswith(PAYOUT_PREFIX))
        finally:
            db.close()
    return out


def divergence(script: Script, state: dict[str, Any] | None) -> str:
    """Where the worker's applied inputs (changelog) leave the pure core's, in words."""
    if state is None:
        return "no state in the changelog"
    got = [e for e in state["applied_event_ids"] if not e.startswith(PAYOUT_PREFIX)]
    want = script.applied_ids
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            near = got[max(0, i - 2) : i + 3]
            return f"applied #{i} is {g!r} where the core applies {w!r}; worker: {near}"
    if len(got) < len(want):
        paying = [w["withdrawal_id"] for w in state["withdrawals"] if w["status"] == "approved"]
        return (
            f"behind: {len(got)} of {len(want)} applied, next {want[len(got)]!r}; paying {paying}"
        )
    if len(got) > len(want):
        return f"ahead: applied {got[len(want) :]} the core does not"
    paying = [w["withdrawal_id"] for w in state["withdrawals"] if w["status"] == "approved"]
    return f"all applied; payouts not recorded for {paying}"


async def test_refused_request_read_again_is_not_decided_again(
    setup: tuple[Kafka, Worker],
) -> None:
    """What Kafka does after a crash, made deterministic: the very same command record is read
    a second time, after the account has changed. A decided command must stay decided."""
    kafka, _ = setup

    async def state(check: Any, what: str) -> AccountState:
        async def probe() -> AccountState | None:
            kafka.check_workers()
            value = (await kafka.accounts()).get(acct)
            st = None if value is None else AccountState.from_dict(value["state"])
            return st if st is not None and check(st) else None

        return await wait_until(probe, timeout=60, what=what)

    asm = s.uid("asm")
    acct = s.account_of(asm)
    await kafka.send("assessment.completed", asm, s.assessment(asm))
    await state(lambda st: True, "activation")
    await kafka.send_many(
        [
            (TRADES, acct, s.opened(acct, "p-1", "1000.00")),
            (TRADES, acct, s.closed(acct, "p-1", "10000.00")),
        ]
    )
    await state(lambda st: st.withdrawable_cents == 8000_00, "withdrawable 8,000.00")
    big, small, sync = s.uid("big"), s.uid("small"), s.uid("sync")
    refused = dumps(s.request(acct, big, 9000_00))  # more than the 8,000.00 withdrawable
    await kafka.send_many(
        [
            (ACCOUNT_COMMANDS, acct, refused),
            (ACCOUNT_COMMANDS, acct, s.request(acct, small, 200_00)),
        ]
    )
    st = await state(lambda st: small in st.withdrawals, "the request after the refused one")
    assert big not in st.withdrawals  # refused: exceeds_withdrawable
    await kafka.send_many(
        [
            (TRADES, acct, s.opened(acct, "p-2", "1000.00")),
            (TRADES, acct, s.closed(acct, "p-2", "5000.00")),
        ]
    )
    await state(lambda st: st.closed_positions_count == 2, "more profit")
    # The refused record again, byte for byte, then a marker to know it was processed.
    await kafka.send_many(
        [(ACCOUNT_COMMANDS, acct, refused), (ACCOUNT_COMMANDS, acct, s.request(acct, sync, 100_00))]
    )
    st = await state(lambda st: sync in st.withdrawals, "the marker request")
    assert big not in st.withdrawals, (
        f"the refused request {big} was accepted when read again: "
        f"{st.withdrawals[big].status}, {st.withdrawals[big].amount_cents} cents"
    )
