"""A scripted stream of trades and withdrawal commands, its pure replay, and the checks.

Shared by the crash test (`tests/integration/test_crash.py`) and the chaos tests
(`tests/chaos`). Each account gets a seeded sequence of inputs, decided against a shadow state
so that most of them make sense; the worker's result is compared with a replay of the very same
inputs through the pure core (`domain.account.handle`) in the test process.

Keeping the replay honest
-------------------------
* Kafka orders one partition, not two topics: a withdrawal request on the commands topic may be
  consumed before a trade published earlier on `trades`. So that the worker's order is the
  published order, the publisher only switches an account from one topic to the other once the
  changelog shows that the account has applied everything published before (a live tail of the
  changelog, `ChangelogTail`). Inputs that change nothing (repeated trades, dead letters) are
  order-insensitive. A refused request is remembered with its answer, so one read again after
  a crash gets the same refusal.
* Payout results (`payout_succeeded`) are commands the worker makes itself, with the clock's
  time and Stripe's transfer id. The replay applies the same commands, with the transfer id and
  time the worker recorded, at the place in the account's sequence where the worker applied
  them (the ids of its changelog records, by version). Each transfer id is then checked
  against the recording Stripe double, which saw the transfer made: amount, destination,
  metadata, one per withdrawal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.codec import dumps, loads_object
from app.topics import ACCOUNT_COMMANDS, FACT_TOPICS, TRADES
from domain.account import DictMemory, Outcome, step
from domain.events import (
    ActivateAccount,
    PayoutSucceeded,
    activation_for,
    parse_assessment,
    parse_command,
    parse_trade,
)
from domain.state import AccountState
from domain.tiers import Tier, default_catalog, parse_tier
from domain.timestamps import format_ts, parse_ts
from domain.withdrawals import Withdrawal
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, wait_until, worker_env
from tests.integration.stripe_double import StripeDouble

SEED = 20261125
TRADES_PER_ACCOUNT = (85, 115)
PAYOUT_PREFIX = "payout-result:"
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


# The crash and chaos tests trade against a tier with every rule of a rule pack on (CONTRACT
# section 4a): an end-of-day trailing floor locking at the start, a daily loss that locks at
# 17:00 Chicago (so the lock, its dead letters and the unlock happen under kills), risk per
# trade and every payout gate, set so that most withdrawal requests still pass them (the
# payouts are what these tests are about) while some are refused by consistency.
EVERY_RULE_TIER: dict[str, Any] = {
    "tier_id": "test-every-rule-100k",
    "name": "Test: every rule of a pack",
    "starting_balance": "100000.00",
    "profit_split": "0.80",
    "rules": {
        "max_loss": {"mode": "trailing_eod", "limit": "0.10", "lock_at": "starting_balance"},
        "daily_loss": {
            "limit": "0.04",
            "anchor": "max",
            "reset_tz": "America/Chicago",
            "reset_at": "17:00",
            "action": "lock",
        },
        "risk_per_trade": {"limit": "0.05"},
        "consistency": {"max_best_day_share": "0.90"},
        "min_trading_days": 1,
        "min_winning_days": {"days": 1, "min_profit": "50.00"},
        "payout_interval_days": 0,
    },
}


def _tier() -> Tier:
    return parse_tier(EVERY_RULE_TIER)


def write_catalog(path: Path) -> Path:
    """The bundled catalog plus the every-rule tier, as a file for `seed_tiers`."""
    tiers = [t.to_wire() for t in default_catalog()] + [_tier().to_wire()]
    path.write_text(json.dumps(tiers))
    return path


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


def generate(
    script: Script,
    index: int,
    refusals: bool = False,
    doomed: Iterable[int] = (),
    seed: int = SEED,
    trades_per_account: tuple[int, int] = TRADES_PER_ACCOUNT,
    history: int = 0,
    redeliveries: float = 0.015,
) -> None:
    """The account's inputs, decided against a shadow state so that most of them make sense.

    With `refusals`, some requests ask for more than is withdrawable (refused, changing
    nothing), each followed at once by an accepted one on the same topic. The first `history`
    trades come before anything else: trade events only (one topic, so they can be published
    as one backlog), with small P&L that keeps the account near its start. After them, a
    trade is a producer's redelivery of any earlier one with probability `redeliveries`.
    """
    rng = random.Random(seed * 1000 + index)
    acct, user = script.account_id, script.user_id
    memory = DictMemory()
    first = step(None, activation_command(script), memory)
    memory.record(activation_command(script), first)
    state: AccountState | None = first.state
    assert state is not None
    applied = 1
    script.applied_ids = [script.activation_event_id]
    clock = T0 + timedelta(days=1, seconds=index)
    sent_trades: list[bytes] = []
    counters = Counter[str]()

    def stamp() -> datetime:
        nonlocal clock
        clock += timedelta(seconds=rng.randint(1, 90))
        if rng.random() < 0.03:
            clock += timedelta(hours=rng.randint(3, 30))  # days roll over, locks end
        return clock

    def add(topic: str, wire: dict[str, Any] | bytes) -> Outcome:
        nonlocal state, applied
        raw = wire if isinstance(wire, bytes) else dumps(wire)
        obj = loads_object(raw)
        inp = Input(topic, raw, str(obj["event_id"]), applied)
        message = parse_input(inp)
        outcome = step(state, message, memory)
        memory.record(message, outcome)
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
        if kind == "w":
            # Withdrawal ids name their account: the Stripe double outlives one test, and its
            # transfers are found by withdrawal id.
            return f"w-{acct}-{counters[kind]}"
        return f"{kind}-{index}-{counters[kind]}"

    n_trades = rng.randint(*trades_per_account)
    doom_at = n_trades // 2 if index in set(doomed) else -1
    trades = 0
    ghosts: list[str] = []  # positions opened after the closure: dead-lettered
    while trades < n_trades:
        assert state is not None
        r = rng.random()
        if trades < history:
            trades += 1
            add(TRADES, _history_trade(state, rng, next_id, format_ts(stamp())))
            continue
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
        if sent_trades and r > 1 - redeliveries:
            add(TRADES, rng.choice(sent_trades))  # a producer's redelivery: changes nothing
            continue
        at = format_ts(stamp())
        if trades == doom_at and state.is_active:
            if not state.positions:
                out = add(
                    TRADES,
                    {**s.opened(acct, next_id("p"), "1000.00", next_id("t")), "occurred_at": at},
                )
                if not out.changed:
                    # Refused (daily_loss_locked): the breach comes with a later trade.
                    doom_at = trades + 1
                    continue
            pid = next(iter(state.positions))
            # Past the max-loss floor by up to 1,000.00: the account closes.
            readings = state.readings()
            rule = "max_loss" if "max_loss" in readings else "drawdown"
            past = readings[rule].remaining_cents + rng.randint(1, 1000_00)
            loss = state.positions[pid].unrealized_pnl_cents - past
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


def _history_trade(
    state: AccountState, rng: random.Random, next_id: Callable[[str], str], at: str
) -> dict[str, Any]:
    """One trade of a long history: at most three positions, P&L in hundreds of dollars and
    closes that pull the realized P&L back towards zero, so no rule ever breaks."""
    acct = state.account_id
    n_open = len(state.positions)
    r = rng.random()
    if n_open == 0 or (n_open < 3 and r < 0.2):
        wire = s.opened(acct, next_id("p"), "1000.00", next_id("t"))
    elif r < 0.8:
        pid = rng.choice(sorted(state.positions))
        wire = s.updated(acct, pid, _money(rng.randint(-300_00, 300_00)), None, next_id("t"))
    else:
        pid = rng.choice(sorted(state.positions))
        realized = -state.realized_pnl_cents // 4 + rng.randint(-100_00, 100_00)
        wire = s.closed(acct, pid, _money(realized), next_id("t"))
    return {**wire, "occurred_at": at}


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
    # Every withdrawal: in the final value, or archived after it settled.
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)


Completed = dict[str, tuple[str, str]]  # withdrawal id -> (stripe transfer id, completed_at)


def replay(script: Script, applied_ids: list[str], completed: Completed) -> Expected:
    """The script through the core (`step`, with a memory as the worker's tables), with the
    worker's payout results where it applied them (`applied_ids`, from the changelog) and as
    it recorded them (`completed`, from its withdrawal.completed facts)."""
    memory = DictMemory()
    results_after: dict[int, list[str]] = defaultdict(list)
    seen = 0
    for eid in applied_ids:
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
        outcome = step(state, message, memory)
        memory.record(message, outcome)
        if outcome.changed:
            state = outcome.state
            facts.extend(outcome.facts)
            approved.extend(
                f["withdrawal_id"] for f in outcome.facts if f["type"] == "withdrawal.approved"
            )
            if not isinstance(message, PayoutSucceeded):
                applied += 1
                for eid in results_after.pop(applied, []):
                    apply(payout_result(script.account_id, eid, completed))
        return outcome

    apply(activation_command(script))
    for inp in script.inputs:
        outcome = apply(parse_input(inp))
        if outcome.dead_letter:
            dead.append(inp.event_id)
    assert state is not None
    assert not results_after, f"payout results the replay could not place: {dict(results_after)}"
    return Expected(
        state, facts, dead, approved, {**memory.settled(state.account_id), **state.withdrawals}
    )


def payout_result(account_id: str, eid: str, completed: Completed) -> PayoutSucceeded:
    wid = eid[len(PAYOUT_PREFIX) :]
    recorded = completed.get(wid)
    assert recorded is not None, f"no withdrawal.completed fact for {wid}"
    return PayoutSucceeded(
        event_id=eid,
        account_id=account_id,
        withdrawal_id=wid,
        stripe_transfer_id=recorded[0],
        at=parse_ts(recorded[1]),
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
        # Per account, the id of the input that made each version: the value keeps the last
        # RECENT_IDS of them, and every applied input writes a changelog record.
        self.by_version: dict[str, dict[int, str]] = defaultdict(dict)
        self.records = 0
        self.went_back: list[tuple[str, int, int]] = []

    def total(self) -> int:
        return sum(self.applied.values())

    def applied_ids(self, account_id: str) -> list[str]:
        """The ids of the inputs the account applied, in order (as the changelog shows)."""
        known = self.by_version.get(account_id, {})
        version = self.states.get(account_id, {}).get("version", 0)
        missing = [v for v in range(1, version + 1) if v not in known]
        assert not missing, f"{account_id}: versions never seen in the changelog: {missing[:5]}"
        return [known[v] for v in range(1, version + 1)]

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
                        known = self.by_version[acct]
                        for back, (eid, _) in enumerate(reversed(state["recent_ids"])):
                            known[state["version"] - back] = eid
                        n = sum(
                            1
                            for v, e in known.items()
                            if v <= state["version"] and not e.startswith(PAYOUT_PREFIX)
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
        # How many inputs may be out: a test holds the stream back with it (faults in phases).
        self.limit = self.total
        self.blocked_rounds = 0
        self.progress_at = time.monotonic()

    def stuck(self) -> dict[str, str]:
        """Accounts waiting to switch topic, and where the worker's sequence left the core's."""
        out = {}
        for sc in self.scripts:
            i = self.next[sc.account_id]
            if i < len(sc.inputs) and not self._publishable(sc, i):
                out[sc.account_id] = divergence(sc, self.tail, sc.account_id)
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
            room = self.limit - self.published
            if room <= 0:
                self.progress_at = time.monotonic()  # held back on purpose: not a stall
                await asyncio.sleep(pause)
                continue
            batch: list[tuple[str, str, bytes]] = []
            for sc in self.scripts:
                i = self.next[sc.account_id]
                taken = 0
                while (
                    i < len(sc.inputs)
                    and taken < per_round
                    and len(batch) < room
                    and self._publishable(sc, i)
                ):
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


async def activate_all(
    kafka: Kafka, tail: ChangelogTail, count: int, tag: str, timeout: float = 60
) -> list[Script]:
    scripts = []
    for i in range(count):
        asm, user = f"asm-{tag}-{i:03d}", f"usr_{tag}_{i:03d}"
        scripts.append(
            Script(s.account_of(asm), user, s.assessment(asm, user, EVERY_RULE_TIER["tier_id"]))
        )
    await kafka.send_many(
        [("assessment.completed", sc.assessment["assessment_id"], sc.assessment) for sc in scripts]
    )

    def all_active() -> bool:
        kafka.check_workers()
        return all(tail.applied.get(sc.account_id, 0) >= 1 for sc in scripts)

    await wait_until(all_active, timeout=timeout, interval=0.1, what=f"{count} activations")
    tier = _tier()
    for sc in scripts:
        first = tail.by_version[sc.account_id][1]
        assessment = parse_assessment(sc.assessment)
        derived = activation_for(assessment, tier)
        assert derived is not None
        # The activation's id must come from the assessment alone (stable across redelivery).
        assert first in (f"activate:{assessment.assessment_id}", derived.event_id), first
        sc.activation_event_id = first
    return scripts


async def wait_caught_up(
    kafka: Kafka, tail: ChangelogTail, scripts: list[Script], timeout: float = 60
) -> None:
    """Until the changelog shows every input applied and no payout in flight."""

    def behind() -> dict[str, str]:
        out = {}
        for sc in scripts:
            got = tail.applied.get(sc.account_id, 0)
            state = tail.states.get(sc.account_id, {})
            paying = any(w["status"] == "approved" for w in state.get("withdrawals", []))
            if got != sc.applied_total or paying:
                out[sc.account_id] = divergence(sc, tail, sc.account_id)
        return out

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kafka.check_workers()
        if not behind():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the changelog never caught up with the inputs: {behind()}")


def local_applied(data_dir: Path, account_ids: set[str]) -> dict[str, int]:
    """The state version (inputs applied) of each account in a stopped worker's RocksDB."""
    from rocksdict import AccessType, Options, Rdict

    out: dict[str, int] = {}
    for path in sorted(data_dir.glob("v1/tables/accounts-*.db")):
        db = Rdict(str(path), access_type=AccessType.read_only(), options=Options(raw_mode=True))
        try:
            for key, value in db.items():
                if not isinstance(key, bytes) or not key.startswith(b'"'):
                    continue  # Faust's own keys (the persisted changelog offset)
                if json.loads(key) in account_ids:
                    out[json.loads(key)] = json.loads(bytes(value))["state"]["version"]
        finally:
            db.close()
    return out


def divergence(script: Script, tail: ChangelogTail, account_id: str) -> str:
    """Where the worker's applied inputs (changelog) leave the pure core's, in words."""
    state = tail.states.get(account_id)
    if state is None:
        return "no state in the changelog"
    try:
        ids = tail.applied_ids(account_id)
    except AssertionError as exc:
        return str(exc)
    got = [e for e in ids if not e.startswith(PAYOUT_PREFIX)]
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


# --- the checks ----------------------------------------------------------------------------------

Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]


@dataclass
class Verdict:
    expected: dict[str, Expected]
    duplicates: Counter[str]
    statuses: Counter[str]
    closed: int
    dead_letters: set[str]
    transfers: int


def verify(
    scripts: list[Script],
    tail: ChangelogTail,
    accounts: dict[str, dict[str, Any]],
    fact_records: list[Record],
    dlq_records: list[Record],
    double: StripeDouble,
    prefix: str,
) -> Verdict:
    """The worker's outcome against the pure replay of the same inputs.

    1. every account's state in the changelog equals the replay's;
    2. every fact topic holds exactly the replay's facts by `event_id` (repeats allowed only
       byte for byte: at-least-once), in the order they happened per account;
    3. the trade dead letters are the replay's (by event id);
    4. every withdrawal produced at most one transfer at the recording Stripe double, exactly
       one for each the replay approved, and the one the account recorded.
    """
    expected: dict[str, Expected] = {}
    mismatched: dict[str, list[str]] = {}
    completed: Completed = {}
    for topic, _, value, _ in fact_records:
        if value is not None and topic.endswith("withdrawal.completed"):
            fact = json.loads(value)
            completed[fact["withdrawal_id"]] = (fact["stripe_payout_id"], fact["occurred_at"])
    for sc in scripts:
        worker_state = accounts[sc.account_id]["state"]
        exp = replay(sc, tail.applied_ids(sc.account_id), completed)
        expected[sc.account_id] = exp
        want = json.loads(dumps(exp.state.to_dict()))
        got = json.loads(dumps(worker_state))
        if got != want:
            mismatched[sc.account_id] = [k for k in want if want.get(k) != got.get(k)]
    assert not mismatched, f"states differing from the replay (fields): {mismatched}"

    by_topic: dict[str, dict[str, bytes]] = defaultdict(dict)
    order: dict[tuple[str, str], list[str]] = defaultdict(list)
    duplicates: Counter[str] = Counter()
    for topic, key, value, _ in fact_records:
        assert value is not None and key is not None
        fact = json.loads(value)
        if fact["account_id"] not in expected:
            continue  # an account outside the script (the test checks it on its own)
        base = topic[len(prefix) :]
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

    dead_ids = {loads_object(v)["event_id"] for _, _, v, _ in dlq_records if v}
    want_dead = {eid for exp in expected.values() for eid in exp.dead_letters}
    assert dead_ids == want_dead

    assert all(n <= 1 for n in double.created_per_withdrawal.values()), {
        w: n for w, n in double.created_per_withdrawal.items() if n > 1
    }
    approved_total = 0
    for acct, exp in expected.items():
        for wid in exp.approved:
            approved_total += 1
            w = exp.withdrawals[wid]
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
    mine = {wid for exp in expected.values() for wid in exp.withdrawals}
    made = sum(n for wid, n in double.created_per_withdrawal.items() if wid in mine)
    assert made == approved_total, (made, approved_total)

    statuses = Counter(w.status for e in expected.values() for w in e.withdrawals.values())
    closed = sum(1 for e in expected.values() if not e.state.is_active)
    return Verdict(expected, duplicates, statuses, closed, want_dead, approved_total)


def killable_env(
    services: Services, prefix: str, double: StripeDouble, schema: str
) -> dict[str, str]:
    """Workers that are SIGKILLed and started again: the recording Stripe double, their own
    schema, and a short session timeout (Faust's default 60 s would keep a restarted worker
    waiting for its dead predecessor to leave the group; the broker's minimum is 6 s)."""
    return worker_env(
        services,
        prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=schema,
        BROKER_SESSION_TIMEOUT="6",
        BROKER_HEARTBEAT_INTERVAL="1",
    )


async def read_outcome(
    kafka: Kafka,
) -> tuple[dict[str, dict[str, Any]], list[Record], list[Record]]:
    """The accounts (changelog), every fact record and the trade dead letters, once settled."""
    await asyncio.sleep(1.0)  # let any repeated fact of the last restart land
    accounts = await kafka.accounts()
    fact_records = await kafka.read_all(FACT_TOPICS)
    dlq_records = await kafka.read_all([f"{TRADES}.dlq"])
    return accounts, fact_records, dlq_records
