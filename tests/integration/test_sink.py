"""The PostgreSQL sink on the real broker and database: repeats and old snapshots change
nothing, a database outage loses nothing, and thousands of accounts land exactly as the
tables hold them (`reconcile` agrees)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.codec import dumps
from app.reconcile import Difference, reconcile
from app.tiers_seed import seed_tiers
from app.topics import SINK_DLQ
from domain.account import Outcome
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.state import AccountState
from tests.integration import streams as s
from tests.integration.conftest import Services, pg_dsn
from tests.integration.harness import Kafka, Worker, wait_until
from tests.integration.http_support import Http, auth
from tests.integration.sink_support import (
    DAY_COLUMNS,
    SINK_TOPICS,
    behind,
    db_count,
    db_rows,
    differences,
    expected_from_tables,
    reconcile_cli,
    settings_of,
    sink_env,
    stack,
    start_worker,
    wait_all_caught_up,
    wait_caught_up,
)
from tests.integration.stripe_double import StripeDouble
from tests.unit.domain.story import Story

pytestmark = pytest.mark.integration

SNAPSHOTS = "fundedflow.account-snapshots"
COMMANDS = "fundedflow.account-commands"


@pytest.fixture(scope="module")
def double() -> Iterator[StripeDouble]:
    d = StripeDouble()
    d.start()
    yield d
    d.stop()


@pytest.fixture
def env(services: Services, db_schema: str, double: StripeDouble) -> dict[str, str]:
    return sink_env(
        services,
        s.uid("sk") + ".",
        db_schema,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
    )


@pytest.fixture
async def kafka(services: Services, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Kafka]:
    await seed_tiers(settings_of(env))
    worker = start_worker(env, tmp_path)
    k = Kafka(services, env["FUNDEDFLOW_TOPIC_PREFIX"])
    k.workers.append(worker)
    await k.start()
    try:
        await worker.wait_ready()
        yield k
    finally:
        await k.stop()
        worker.stop()


def worker_of(kafka: Kafka) -> Worker:
    return kafka.workers[0]


# --- crafted snapshots and facts -----------------------------------------------------------


class Crafted:
    """An account told through the domain core, as the account agent would publish it."""

    def __init__(self, assessment_id: str) -> None:
        self.story = Story(assessment_id=assessment_id)
        self.snapshots: list[dict[str, Any]] = []
        self.facts: list[dict[str, Any]] = []
        assert self.story.last is not None
        self.record(self.story.last)

    def record(self, outcome: Outcome) -> None:
        self.snapshots.append(snapshot(self.story.state, withdrawal_ids_in(outcome.facts)))
        self.facts += outcome.facts

    @property
    def account_id(self) -> str:
        return self.story.account_id

    def items(self, snaps: list[dict[str, Any]], facts: list[dict[str, Any]]) -> list[Any]:
        return [(SNAPSHOTS, self.account_id, dumps(v)) for v in snaps] + [
            (f["type"], self.account_id, dumps(f)) for f in facts
        ]


async def test_repeated_facts_and_old_snapshots_change_nothing(
    kafka: Kafka, services: Services, db_schema: str, env: dict[str, str]
) -> None:
    a = Crafted(s.uid("asm"))
    a.record(a.story.open("p-1"))
    a.record(a.story.close("p-1", "5000.00"))
    requested = a.story.request("2000.00")
    wid = withdrawal_ids_in(requested.facts)[0]
    a.record(requested)
    a.record(a.story.reject(wid))
    # The newest snapshot's withdrawal row says 12.34 was reversed; an older snapshot from
    # before the field existed has no `reversed_total` (read as 0.00): never written over it.
    newest_w = a.snapshots[-1]["withdrawals"][0]
    a.snapshots[-1]["withdrawals"][0] = {**newest_w, "reversed_total": "12.34"}
    older_w = a.snapshots[-2]["withdrawals"][0]
    a.snapshots[-2]["withdrawals"][0] = {k: v for k, v in older_w.items() if k != "reversed_total"}
    # Facts of an account whose rows never come: account_events has no foreign key.
    orphan = {**a.facts[0], "event_id": s.uid("orphan"), "account_id": "fa_orphan"}

    await kafka.send_many(a.items(a.snapshots, [*a.facts, orphan]))
    await wait_caught_up(kafka, SINK_TOPICS)
    first = await db_rows(services, db_schema)
    state = a.story.state
    row = first["funded_accounts"][a.account_id]
    assert row["version"] == state.version and row["status"] == "active"
    balances = first["funded_virtual_accounts"][a.account_id]
    assert str(balances["current_balance"]) == "105000.00" and balances["version"] == state.version
    w = first["withdrawals"][wid]
    assert w["status"] == "rejected" and w["rejection_reason"] == "kyc"
    assert str(w["amount"]) == "2000.00" and w["rejected_at"].tzinfo is not None
    assert str(w["reversed_total"]) == "12.34"
    events = first["account_events"]
    assert set(events) == {f["event_id"] for f in [*a.facts, orphan]}
    for fact in a.facts:
        got = events[fact["event_id"]]
        assert got["type"] == fact["type"] and got["account_id"] == a.account_id
        assert json.loads(got["payload"]) == fact

    # Every fact again, and every older snapshot again, newest last and newest first.
    await kafka.send_many(a.items(a.snapshots[:-1], [*a.facts, orphan]))
    await kafka.send_many(a.items(list(reversed(a.snapshots[:-1])), a.facts))
    await wait_caught_up(kafka, SINK_TOPICS)
    assert await db_rows(services, db_schema) == first

    # A newer snapshot alone, then the older ones, each in its own batch.
    b = Crafted(s.uid("asm"))
    b.record(b.story.open("p-1", "100.00"))
    b.record(b.story.update("p-1", "-50.00"))
    await kafka.send_many(b.items(b.snapshots[-1:], []))
    await wait_caught_up(kafka, SINK_TOPICS)
    newest = (await db_rows(services, db_schema))["funded_virtual_accounts"][b.account_id]
    assert str(newest["unrealized_pnl"]) == "-50.00"
    for old in reversed(b.snapshots[:-1]):
        await kafka.send_many(b.items([old], []))
        await wait_caught_up(kafka, SINK_TOPICS)
    after = await db_rows(services, db_schema)
    assert after["funded_virtual_accounts"].pop(b.account_id) == newest
    assert after["funded_accounts"].pop(b.account_id)["version"] == b.story.state.version
    assert after == first

    # None of these accounts is in the tables: reconcile names every row.
    diffs = await reconcile(settings_of(env))
    unknown = "not in the tables (unknown account)"
    assert set(diffs) == {
        Difference("funded_accounts", a.account_id, unknown),
        Difference("funded_accounts", b.account_id, unknown),
        Difference("funded_virtual_accounts", a.account_id, unknown),
        Difference("funded_virtual_accounts", b.account_id, unknown),
        Difference(
            "withdrawals", wid, f"no such withdrawal in the tables (account {a.account_id})"
        ),
    }
    cli = reconcile_cli(env)
    assert cli.returncode == 1, cli.stderr
    lines = cli.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(str(d) for d in diffs)
    assert lines[-1].endswith("5 difference(s)"), lines[-1]
    assert "database write failed" not in worker_of(kafka).tail(100_000)


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_lands(
    kafka: Kafka, services: Services, db_schema: str
) -> None:
    """PostgreSQL refuses a NUL in text or jsonb, and a row its checks forbid: those records go
    to sink.dlq with a reason, the rest of the batch commits, and the sink keeps following."""
    good = Crafted(s.uid("asm"))
    good.record(good.story.open("p-1"))
    good.record(good.story.close("p-1", "5000.00"))
    # A fact whose payload holds a NUL: jsonb refuses the \u0000 escape (SQLSTATE 22P05).
    nul_fact = {**good.facts[0], "event_id": s.uid("nul"), "note": "before\x00after"}
    # The newest snapshot of an account with a NUL in a text column (SQLSTATE 22021): set
    # aside, its older snapshot in the same batch lands instead.
    nul = Crafted(s.uid("asm"))
    nul.record(nul.story.trade("10.00"))
    newest = nul.snapshots[-1]
    nul_snap = {**newest, "account": {**newest["account"], "closure_reason": "x\x00y"}}
    # A withdrawal status the table's check constraint refuses (SQLSTATE 23514).
    checked = Crafted(s.uid("asm"))
    checked.record(checked.story.open("p-1"))
    checked.record(checked.story.close("p-1", "5000.00"))
    requested = checked.story.request("2000.00")
    wid = withdrawal_ids_in(requested.facts)[0]
    checked.record(requested)
    last = checked.snapshots[-1]
    bad_status = {**last, "withdrawals": [{**last["withdrawals"][0], "status": "paid"}]}
    bad = {
        "nul_fact": (nul_fact["type"], good.account_id, dumps(nul_fact)),
        "nul_snap": (SNAPSHOTS, nul.account_id, dumps(nul_snap)),
        "bad_status": (SNAPSHOTS, checked.account_id, dumps(bad_status)),
    }
    await kafka.send_many(
        [
            *good.items(good.snapshots[:1], good.facts[:2]),
            bad["nul_fact"],
            *nul.items(nul.snapshots[:-1], nul.facts),
            bad["nul_snap"],
            *good.items(good.snapshots[1:], good.facts[2:]),
            *checked.items(checked.snapshots[:-1], checked.facts),
            bad["bad_status"],
        ]
    )
    # The old sink retried the batch forever here: the group never got past it.
    await wait_caught_up(kafka, SINK_TOPICS, timeout=45)

    rows = await db_rows(services, db_schema)
    assert rows["funded_accounts"][good.account_id]["version"] == good.story.state.version
    balances = rows["funded_virtual_accounts"][good.account_id]
    assert str(balances["current_balance"]) == "105000.00"
    assert rows["funded_accounts"][nul.account_id]["version"] == nul.snapshots[-2]["version"]
    assert rows["funded_accounts"][nul.account_id]["closure_reason"] is None
    assert (
        rows["funded_accounts"][checked.account_id]["version"] == checked.snapshots[-2]["version"]
    )
    assert wid not in rows["withdrawals"]
    events = rows["account_events"]
    assert set(events) == {f["event_id"] for f in [*good.facts, *nul.facts, *checked.facts]}

    dead = await kafka.read_all([SINK_DLQ])
    assert len(dead) == 3, dead
    by_value = {value: (topic, key, dict(headers)) for topic, key, value, headers in dead}
    for name, (base, key, raw) in bad.items():
        topic, got_key, headers = by_value[raw]
        assert topic == kafka.t(SINK_DLQ), name
        assert got_key == key.encode(), name
        assert headers["source-topic"] == kafka.t(base).encode(), name
        assert int(headers["source-partition"]) >= 0 and int(headers["source-offset"]) >= 0
        reason = headers["reason"].decode()
        want = "SQLSTATE 23514" if name == "bad_status" else "SQLSTATE 22"
        assert want in reason, (name, reason)

    async with Http([worker_of(kafka)]) as http:
        metrics = await http.get(0, "/metrics", auth("usr_ops"))
    assert metrics.status == 200
    assert "fundedflow_sink_set_aside_total 3" in metrics.body.splitlines(), metrics.body
    log = worker_of(kafka).tail(200_000)
    assert log.count("sink: set aside") == 3, log[-5000:]
    assert "database write failed" not in log

    # And the sink keeps following: a later record lands.
    later = Crafted(s.uid("asm"))
    await kafka.send_many(later.items(later.snapshots, later.facts))
    await wait_until(
        lambda: _count_is(services, db_schema, "funded_accounts", 4),
        timeout=30,
        what="a later record in PostgreSQL",
    )
    await wait_caught_up(kafka, SINK_TOPICS)
    assert len(await kafka.read_all([SINK_DLQ])) == 3


# --- a real stream -------------------------------------------------------------------------


async def activate_all(kafka: Kafka, users: list[str], timeout: float = 60) -> dict[str, str]:
    """Activates one account per user given; account id to user id."""
    assessments = [s.uid("asm") for _ in users]
    await kafka.send_many(
        [
            ("assessment.completed", a, s.assessment(a, user=u))
            for a, u in zip(assessments, users, strict=True)
        ]
    )
    accounts = {s.account_of(a): u for a, u in zip(assessments, users, strict=True)}
    await wait_for_states(kafka, list(accounts), lambda st: True, "activation", timeout)
    return accounts


async def wait_for_states(
    kafka: Kafka, accounts: list[str], check: Any, what: str, timeout: float = 60
) -> dict[str, AccountState]:
    async def probe() -> dict[str, AccountState] | None:
        kafka.check_workers()
        values = await kafka.accounts()
        states = {}
        for acct in accounts:
            value = values.get(acct)
            if value is None:
                return None
            st = AccountState.from_dict(value["state"])
            if not check(st):
                return None
            states[acct] = st
        return states

    return await wait_until(probe, timeout=timeout, interval=1.0, what=what)


async def assert_database_follows_the_tables(
    kafka: Kafka, services: Services, db_schema: str, env: dict[str, str]
) -> dict[str, dict[str, dict[str, Any]]]:
    await wait_all_caught_up(kafka, timeout=90)
    expected = expected_from_tables(await kafka.accounts())
    actual = await db_rows(services, db_schema)
    diffs = differences(expected, actual)
    assert not diffs, "\n".join(diffs[:20])
    facts = await kafka.facts(*[t for t in SINK_TOPICS if t != SNAPSHOTS])
    assert set(actual["account_events"]) == {f["event_id"] for f in facts}
    found = await reconcile(settings_of(env))
    assert found == [], "\n".join(map(str, found[:20]))
    return actual


PACK_TIER = "funded-50k-eod-trailing-soft-daily-chicago"  # bundled: S 50,000.00, daily 1,000.00
NEXT_DAY = "2026-11-23T23:00:05Z"  # just after 17:00 in Chicago: day 2026-11-23


def at_instant(event: dict[str, Any], occurred_at: str) -> dict[str, Any]:
    return {**event, "occurred_at": occurred_at}


async def test_a_rule_pack_accounts_day_and_lock_land_and_reconcile_spots_a_wrong_day_column(
    kafka: Kafka, services: Services, db_schema: str, env: dict[str, str]
) -> None:
    """Through the real worker: a rule-pack account's day figures and its daily-loss lock
    reach its balances row, the next day replaces them, old snapshots replayed do not bring the
    lock back, a legacy account's day columns stay NULL, and reconcile names a wrong day
    column."""
    legacy_asm, pack_asm = s.uid("asm"), s.uid("asm")
    legacy, pack = s.account_of(legacy_asm), s.account_of(pack_asm)
    await kafka.send_many(
        [
            ("assessment.completed", legacy_asm, s.assessment(legacy_asm, user="usr_1")),
            (
                "assessment.completed",
                pack_asm,
                # Pinned: the shared test clock (streams.ts) moves on with every test run before.
                {
                    **s.assessment(pack_asm, user="usr_2", tier=PACK_TIER),
                    "completed_at": "2026-11-23T10:00:00Z",
                },
            ),
        ]
    )
    await wait_for_states(kafka, [legacy, pack], lambda st: True, "activation")
    # Activated 2026-11-23T10:00Z = 04:00 in Chicago: day 2026-11-22, ends 2026-11-23T23:00Z.
    # A winning day (300.00 >= 150.00), then an open loss under the floor 50,000.00 - 1,000.00.
    await kafka.send_many(
        [
            ("trades", legacy, s.opened(legacy, "p-1", "1000.00")),
            ("trades", legacy, s.closed(legacy, "p-1", "250.00")),
            # Dated on the activation's day (the shared test clock may be past it by now).
            ("trades", pack, at_instant(s.opened(pack, "p-1", "1000.00"), "2026-11-23T11:00:01Z")),
            ("trades", pack, at_instant(s.closed(pack, "p-1", "300.00"), "2026-11-23T11:00:02Z")),
            ("trades", pack, at_instant(s.opened(pack, "p-2", "1000.00"), "2026-11-23T11:00:03Z")),
            # equity 48,999.99
            (
                "trades",
                pack,
                at_instant(s.updated(pack, "p-2", "-1300.01"), "2026-11-23T11:00:04Z"),
            ),
        ]
    )
    await wait_for_states(
        kafka,
        [legacy, pack],
        lambda st: (
            st.closed_positions_count == 1 and (st.book is None or st.book.locked_until is not None)
        ),
        "the first day's trades",
    )
    await wait_all_caught_up(kafka)
    row = (await db_rows(services, db_schema))["funded_virtual_accounts"][pack]
    assert {c: row[c] for c in DAY_COLUMNS} == {
        "trading_day": date(2026, 11, 22),
        "day_resets_at": datetime(2026, 11, 23, 23, 0, tzinfo=UTC),
        "day_anchor": Decimal("50000.00"),
        "day_pnl": Decimal("300.00"),  # closed P&L only
        "locked_until": datetime(2026, 11, 23, 23, 0, tzinfo=UTC),
        "trading_days": 1,
        "winning_days": 1,
    }
    assert row["current_balance"] == Decimal("48999.99")
    locked = await kafka.facts("funded-account.locked")
    assert [f["account_id"] for f in locked] == [pack]
    events = (await db_rows(services, db_schema))["account_events"]
    assert events[locked[0]["event_id"]]["type"] == "funded-account.locked"

    # The next day: its first event ends the lock, then closes the position for -100.00.
    await kafka.send("trades", pack, at_instant(s.closed(pack, "p-2", "-100.00"), NEXT_DAY))
    await wait_for_states(kafka, [pack], lambda st: not st.positions, "the next day's first trade")
    actual = await assert_database_follows_the_tables(kafka, services, db_schema, env)
    row = actual["funded_virtual_accounts"][pack]
    assert {c: row[c] for c in DAY_COLUMNS} == {
        "trading_day": date(2026, 11, 23),
        "day_resets_at": datetime(2026, 11, 24, 23, 0, tzinfo=UTC),
        "day_anchor": Decimal("50300.00"),  # anchor "max" of balance 50,300.00, equity 48,999.99
        "day_pnl": Decimal("-100.00"),
        "locked_until": None,
        "trading_days": 2,
        "winning_days": 1,
    }
    assert [row[c] for c in DAY_COLUMNS] != [None] * len(DAY_COLUMNS)
    legacy_row = actual["funded_virtual_accounts"][legacy]
    assert [legacy_row[c] for c in DAY_COLUMNS] == [None] * len(DAY_COLUMNS)
    assert legacy_row["current_balance"] == Decimal("100250.00")

    # Every snapshot the worker sent, again, newest first: the lock does not come back.
    sent = [
        (SNAPSHOTS, pack, value)
        for _, key, value, _ in await kafka.read_all([SNAPSHOTS])
        if key == pack.encode() and value
    ]
    # (one per batch of the account's inputs: at least the activation's and the last one)
    locks = [json.loads(v)["balances"].get("locked_until") for _, _, v in sent]
    assert locks[-1] is None and "2026-11-23T23:00:00Z" in locks, locks
    await kafka.send_many(list(reversed(sent)))
    await wait_caught_up(kafka, SINK_TOPICS)
    assert (await db_rows(services, db_schema))["funded_virtual_accounts"][pack] == row

    # A wrong day column is a difference, named like any other column's.
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": db_schema})
    try:
        await conn.execute(
            "UPDATE funded_virtual_accounts SET trading_day = '2026-11-22', day_pnl = 0 "
            "WHERE funded_account_id = $1",
            pack,
        )
        # (the checks of migration 0003 take a whole day or none: half a day is refused)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE funded_virtual_accounts SET winning_days = 3 WHERE funded_account_id = $1",
                legacy,
            )
        await conn.execute(
            "UPDATE funded_virtual_accounts SET trading_day = '2026-11-23', "
            "day_resets_at = '2026-11-24T00:00:00Z', day_anchor = 100000, day_pnl = 0, "
            "trading_days = 0 WHERE funded_account_id = $1",
            legacy,
        )
    finally:
        await conn.close()
    wrong_day = (
        "trading_day: database 2026-11-22, tables 2026-11-23; "
        "day_pnl: database 0.00, tables -100.00"
    )
    diffs = await reconcile(settings_of(env))
    assert sorted(diffs) == sorted(
        [
            Difference("funded_virtual_accounts", pack, wrong_day),
            Difference(
                "funded_virtual_accounts",
                legacy,
                "trading_day: database 2026-11-23, tables None; "
                "day_resets_at: database 2026-11-24T00:00:00Z, tables None; "
                "day_anchor: database 100000.00, tables None; "
                "day_pnl: database 0.00, tables None; trading_days: database 0, tables None",
            ),
        ]
    )
    cli = reconcile_cli(env)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert f"funded_virtual_accounts {pack}: {wrong_day}" in cli.stdout.splitlines()


async def test_a_database_outage_delays_the_sink_and_loses_nothing(
    kafka: Kafka, services: Services, db_schema: str, env: dict[str, str]
) -> None:
    worker = worker_of(kafka)
    users = await activate_all(kafka, [f"usr_{i % 5}" for i in range(20)])
    accounts = list(users)
    await kafka.send_many(
        [
            ("trades", acct, e)
            for acct in accounts
            for e in (s.opened(acct, "p-1", "1000.00"), s.closed(acct, "p-1", "3000.00"))
        ]
    )
    await wait_until(
        lambda: _count_is(services, db_schema, "funded_accounts", len(accounts)),
        timeout=30,
        what="first rows in PostgreSQL",
    )
    stopped_at = time.monotonic()
    stack("down", "postgres")
    try:
        # The stream goes on: trades, withdrawals and payouts while the database is away.
        wids = {acct: s.uid("w") for acct in accounts}
        await kafka.send_many(
            [("trades", acct, s.opened(acct, "p-2", "500.00")) for acct in accounts]
            + [("trades", acct, s.closed(acct, "p-2", "-120.55")) for acct in accounts]
        )
        await wait_for_states(
            kafka, accounts, lambda st: st.closed_positions_count == 2, "trades during outage"
        )
        await kafka.send_many(
            [
                (COMMANDS, acct, s.request(acct, wids[acct], 250_00, user=users[acct]))
                for acct in accounts
            ]
        )
        await wait_for_states(
            kafka,
            accounts,
            lambda st: (
                st.withdrawals and all(w.status == "completed" for w in st.withdrawals.values())
            ),
            "payouts during outage",
        )
        await wait_until(
            lambda: "sink: database write failed" in worker.tail(200_000),
            timeout=30,
            what="the outage in the worker's log",
        )
        await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))
        # Offsets move on only after a commit: what the sink has not written stays uncommitted.
        waiting = await behind(services, kafka.prefix, SINK_TOPICS)
        assert sum(waiting.values()) >= 3 * len(accounts), waiting
    finally:
        stack("up", "postgres")
    outage = time.monotonic() - stopped_at
    await kafka.send_many(
        [("trades", acct, s.opened(acct, "p-3", "700.00")) for acct in accounts]
        + [("trades", acct, s.updated(acct, "p-3", "42.10")) for acct in accounts]
    )
    await wait_for_states(
        kafka,
        accounts,
        lambda st: "p-3" in st.positions and st.unrealized_pnl_cents == 42_10,
        "trades after",
    )
    actual = await assert_database_follows_the_tables(kafka, services, db_schema, env)
    assert len(actual["withdrawals"]) == len(accounts)
    assert {w["status"] for w in actual["withdrawals"].values()} == {"completed"}
    log = worker.tail(500_000)
    assert "sink: database write succeeded after" in log
    cli = reconcile_cli(env)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.splitlines() == [
        f"reconcile: {len(accounts)} accounts in the tables; database: {len(accounts)} "
        f"funded_accounts, {len(accounts)} funded_virtual_accounts, {len(accounts)} withdrawals; "
        "no differences"
    ]
    print(f"outage {outage:.1f}s")


async def _count_is(services: Services, schema: str, table: str, n: int) -> bool:
    return await db_count(services, schema, table) >= n


async def test_thousands_of_accounts_land_exactly_as_the_tables_hold_them(
    kafka: Kafka, services: Services, db_schema: str, env: dict[str, str]
) -> None:
    t0 = time.monotonic()
    n = 2000
    users = await activate_all(kafka, [f"usr_{i % 300}" for i in range(n)], timeout=90)
    accounts = list(users)
    t_activated = time.monotonic()
    trades = []
    for acct in accounts:
        trades += [
            s.opened(acct, "p-1", "1000.00"),
            s.updated(acct, "p-1", "350.00"),
            s.closed(acct, "p-1", "2000.00"),
            s.opened(acct, "p-2", "2000.00"),
            s.closed(acct, "p-2", "-100.00"),
        ]
    await kafka.send_many([("trades", e["account_id"], e) for e in trades])
    await wait_for_states(
        kafka, accounts, lambda st: st.closed_positions_count == 2, "trades", timeout=90
    )
    t_traded = time.monotonic()
    small = {acct: s.uid("ws") for acct in accounts[0::10]}
    large = {acct: s.uid("wl") for acct in accounts[1::10]}
    await kafka.send_many(
        [(COMMANDS, a, s.request(a, w, 250_00, user=users[a])) for a, w in small.items()]
        + [(COMMANDS, a, s.request(a, w, 1200_00, user=users[a])) for a, w in large.items()]
    )
    rejected = dict(list(large.items())[::2])
    await wait_for_states(kafka, list(large), lambda st: bool(st.withdrawals), "requests")
    await kafka.send_many([(COMMANDS, a, s.reject(a, w)) for a, w in rejected.items()])
    await wait_for_states(
        kafka,
        list(small) + list(rejected),
        lambda st: all(w.status in ("completed", "rejected") for w in st.withdrawals.values()),
        "payouts and rejections",
    )
    t_settled = time.monotonic()
    actual = await assert_database_follows_the_tables(kafka, services, db_schema, env)
    t_done = time.monotonic()
    assert len(actual["funded_accounts"]) == n
    statuses = [w["status"] for w in actual["withdrawals"].values()]
    assert statuses.count("completed") == len(small)
    assert statuses.count("rejected") == len(rejected)
    assert statuses.count("pending") == len(large) - len(rejected)
    print(
        f"activated {t_activated - t0:.1f}s, traded {t_traded - t_activated:.1f}s, "
        f"settled {t_settled - t_traded:.1f}s, database checked {t_done - t_settled:.1f}s"
    )
