"""The pure parts of the PostgreSQL sink: records to rows, collapsing, statement parameters,
the retry loop's metrics, and reconcile's comparison. No services."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from agents.sink import SetAside, SinkDeadLetters, SinkWriter, backoff, new_metrics
from app.codec import dumps
from app.reconcile import Difference, compare, expected_rows
from app.settings import Settings
from app.sink_db import (
    ACCOUNT_COLUMNS,
    BALANCE_COLUMNS,
    EVENT_COLUMNS,
    INSERT_EVENT,
    SNAPSHOT,
    UPSERT_ACCOUNT,
    UPSERT_BALANCES,
    UPSERT_WITHDRAWAL,
    WITHDRAWAL_COLUMNS,
    Batch,
    SinkRecord,
    account_params,
    asyncpg_dsn,
    balance_params,
    collapse,
    event_params,
    refused_reason,
    withdrawal_params,
)
from domain.account import Outcome
from domain.snapshots import snapshot, withdrawal_ids_in
from tests.unit.domain.story import Story
from tests.unit.domain.test_pack_accounts import SOFT_CHICAGO, pack_tier

DAY_COLUMNS = (
    "trading_day",
    "day_resets_at",
    "day_anchor",
    "day_pnl",
    "locked_until",
    "trading_days",
    "winning_days",
)


def snap(story: Story, outcome: Outcome | None = None, ts: float | None = None) -> SinkRecord:
    facts = outcome.facts if outcome is not None else []
    return SinkRecord(SNAPSHOT, dumps(snapshot(story.state, withdrawal_ids_in(facts))), ts)


def fact_records(outcome: Outcome, ts: float | None = None) -> list[SinkRecord]:
    return [SinkRecord(f["type"], dumps(f), ts) for f in outcome.facts]


def story_with_withdrawal() -> tuple[Story, list[SinkRecord], list[SinkRecord], str]:
    """An account with a trade and a withdrawal that is requested then rejected."""
    story = Story()
    snaps = [snap(story, story.last)]
    facts = fact_records(story.last) if story.last else []
    for outcome in (story.open("p-1"), story.close("p-1", "5000.00")):
        snaps.append(snap(story, outcome))
        facts += fact_records(outcome)
    requested = story.request("2000.00")
    wid = withdrawal_ids_in(requested.facts)[0]
    snaps.append(snap(story, requested))
    facts += fact_records(requested)
    rejected = story.reject(wid)
    snaps.append(snap(story, rejected))
    facts += fact_records(rejected)
    return story, snaps, facts, wid


# --- collapsing ----------------------------------------------------------------------------


def test_a_batch_collapses_to_the_newest_version_whatever_the_order() -> None:
    story, snaps, _, wid = story_with_withdrawal()
    for order in (snaps, list(reversed(snaps)), [snaps[-1], *snaps[:-1]]):
        batch = collapse(order)
        assert list(batch.accounts) == [story.account_id]
        rows = batch.accounts[story.account_id]
        assert rows.version == story.state.version
        assert rows.account["version"] == rows.balances["version"] == story.state.version
        assert rows.balances["current_balance"] == Decimal("105000.00")
        assert rows.balances["realized_pnl"] == Decimal("5000.00")
        # The withdrawal's newest row is the rejection, whichever snapshot came last.
        assert list(batch.withdrawals) == [wid]
        w = batch.withdrawals[wid]
        assert w["status"] == "rejected" and w["rejection_reason"] == "kyc"
        assert w["version"] == story.state.version
        assert batch.records == len(snaps) and not batch.invalid


def test_a_withdrawal_keeps_its_newest_row_even_from_an_older_snapshot() -> None:
    story, snaps, _, wid = story_with_withdrawal()
    story.trade("10.00")  # a newer account version that does not mention the withdrawal
    newer = snap(story)
    batch = collapse([snaps[-1], newer])
    assert batch.accounts[story.account_id].version == story.state.version
    assert batch.withdrawals[wid]["status"] == "rejected"
    assert batch.withdrawals[wid]["version"] < story.state.version


def test_each_fact_once_with_its_own_bytes_as_payload() -> None:
    _, _, facts, _ = story_with_withdrawal()
    batch = collapse([*facts, *facts])
    assert (
        len(batch.events)
        == len(facts)
        == len({json.loads(r.value or b"")["event_id"] for r in facts})
    )
    for rec in facts:
        fact = json.loads(rec.value or b"")
        row = batch.events[fact["event_id"]]
        assert row["type"] == rec.kind == fact["type"]
        assert row["account_id"] == fact["account_id"]
        assert json.loads(row["payload"]) == fact
        assert row["occurred_at"].tzinfo is not None


def test_batch_timestamps_and_row_count() -> None:
    _, snaps, facts, _ = story_with_withdrawal()
    records = [
        SinkRecord(r.kind, r.value, ts)
        for r, ts in zip([*snaps, *facts], range(100, 200), strict=False)
    ]
    batch = collapse(records)
    assert batch.oldest_timestamp == 100 and batch.newest_timestamp == 99 + len(records)
    assert batch.row_count == 2 + 1 + len(facts)
    assert collapse([]).empty


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        (SNAPSHOT, b"{not json", "malformed JSON"),
        (SNAPSHOT, None, "empty value"),
        (SNAPSHOT, b"[]", "expected a JSON object"),
        (SNAPSHOT, b'{"account_id": "fa_1"}', "version"),
        ("withdrawal.requested", b'{"type": "withdrawal.approved"}', "read from topic"),
        ("withdrawal.requested", b'{"type": "withdrawal.requested", "event_id": "e"}', ""),
    ],
)
def test_unreadable_records_are_listed_not_raised(
    kind: str, value: bytes | None, reason: str
) -> None:
    story = Story()
    good = snap(story)
    batch = collapse([SinkRecord(kind, value), good])
    assert len(batch.invalid) == 1 and reason in batch.invalid[0]
    assert list(batch.accounts) == [story.account_id]


def test_bad_money_or_times_in_a_snapshot_are_invalid() -> None:
    story = Story()
    s = snapshot(story.state)
    bad_money = {**s, "balances": {**s["balances"], "current_balance": "1.005"}}
    bad_time = {**s, "account": {**s["account"], "activated_at": "2026-11-23 10:00"}}
    other = {**s, "account": {**s["account"], "id": "fa_other"}}
    batch = collapse([SinkRecord(SNAPSHOT, dumps(v)) for v in (bad_money, bad_time, other)])
    assert not batch.accounts and len(batch.invalid) == 3
    assert "balances.current_balance" in batch.invalid[0]
    assert "account.activated_at" in batch.invalid[1]


def test_a_withdrawal_row_carries_its_reversed_total_and_older_records_mean_zero() -> None:
    _, snaps, _, wid = story_with_withdrawal()
    s = json.loads(snaps[-1].value or b"")
    (w,) = s["withdrawals"]
    assert w["reversed_total"] == "0.00"
    partly = {**s, "withdrawals": [{**w, "reversed_total": "12.34"}]}
    older = {**s, "withdrawals": [{k: v for k, v in w.items() if k != "reversed_total"}]}
    bad = {**s, "withdrawals": [{**w, "reversed_total": "12.345"}]}
    got = collapse([SinkRecord(SNAPSHOT, dumps(partly))]).withdrawals[wid]
    assert got["reversed_total"] == Decimal("12.34")
    assert isinstance(got["reversed_total"], Decimal)
    got = collapse([SinkRecord(SNAPSHOT, dumps(older))]).withdrawals[wid]
    assert got["reversed_total"] == Decimal("0.00")
    batch = collapse([SinkRecord(SNAPSHOT, dumps(bad))])
    assert not batch.withdrawals and "withdrawal.reversed_total" in batch.invalid[0]
    (params,) = withdrawal_params(collapse([SinkRecord(SNAPSHOT, dumps(partly))]))
    assert dict(zip(WITHDRAWAL_COLUMNS, params, strict=True))["reversed_total"] == Decimal("12.34")


def pack_story() -> Story:
    """A rule-pack account (days from 17:00 in Chicago) locked by its daily loss."""
    story = Story(pack_tier({**SOFT_CHICAGO, "min_winning_days": {"days": 2, "min_profit": "1"}}))
    story.trade("200.00")
    story.open("p-1")
    story.update("p-1", "-1200.01")
    return story


def test_a_pack_snapshot_lands_its_day_columns_typed_and_a_record_without_them_means_null() -> None:
    story = pack_story()
    s = snapshot(story.state)
    batch = collapse([SinkRecord(SNAPSHOT, dumps(s))])
    (params,) = balance_params(batch)
    b = dict(zip(BALANCE_COLUMNS, params, strict=True))
    assert b["trading_day"] == date(2026, 11, 22)
    assert b["day_resets_at"] == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert b["locked_until"] == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert b["day_anchor"] == Decimal("100000.00") and b["day_pnl"] == Decimal("200.00")
    assert (b["trading_days"], b["winning_days"]) == (1, 1)
    # Sent before the columns existed: the row's day columns are NULL, the rest as before.
    older = {**s, "balances": {k: v for k, v in s["balances"].items() if k not in DAY_COLUMNS}}
    (params,) = balance_params(collapse([SinkRecord(SNAPSHOT, dumps(older))]))
    b = dict(zip(BALANCE_COLUMNS, params, strict=True))
    assert [b[c] for c in DAY_COLUMNS] == [None] * len(DAY_COLUMNS)
    assert b["current_balance"] == Decimal("98999.99")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("trading_day", "2026-11-22T00:00:00Z"),
        ("trading_day", "20261122"),
        ("trading_day", "2026-02-30"),
        ("trading_day", 20261122),
        ("day_resets_at", "2026-11-23 23:00"),
        ("locked_until", "tomorrow"),
        ("day_anchor", "100000.001"),
        ("day_pnl", 1.5e300),
        ("trading_days", -1),
        ("trading_days", True),
        ("winning_days", "3"),
        ("winning_days", 2**31),
    ],
)
def test_bad_day_figures_in_a_snapshot_are_invalid(column: str, value: object) -> None:
    s = snapshot(pack_story().state)
    bad = {**s, "balances": {**s["balances"], column: value}}
    batch = collapse([SinkRecord(SNAPSHOT, dumps(bad))])
    assert not batch.accounts
    (reason,) = batch.invalid
    assert f"balances.{column}" in reason


# --- statements ----------------------------------------------------------------------------


def test_statement_parameters_follow_the_columns_with_decimals_and_aware_times() -> None:
    story, snaps, facts, wid = story_with_withdrawal()
    other = Story(assessment_id="asm_0")  # sorts before the first account
    batch = collapse([*snaps, snap(other), *facts])
    accounts = account_params(batch)
    assert [p[0] for p in accounts] == sorted([story.account_id, other.account_id])
    row = dict(zip(ACCOUNT_COLUMNS, accounts[1], strict=True))
    if row["id"] != story.account_id:
        row = dict(zip(ACCOUNT_COLUMNS, accounts[0], strict=True))
    assert row["status"] == "active" and row["version"] == story.state.version
    assert row["activated_at"] == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert row["closed_at"] is None and row["assessment_id"] == "asm_7"

    balances = {p[1]: dict(zip(BALANCE_COLUMNS, p, strict=True)) for p in balance_params(batch)}
    b = balances[story.account_id]
    assert b["id"] == f"fva_{story.account_id}"
    assert b["starting_balance"] == Decimal("100000.00")
    assert isinstance(b["current_balance"], Decimal) and str(b["current_balance"]) == "105000.00"
    assert b["updated_at"].tzinfo is not None

    (w,) = [dict(zip(WITHDRAWAL_COLUMNS, p, strict=True)) for p in withdrawal_params(batch)]
    assert w["id"] == wid and w["amount"] == Decimal("2000.00") and w["status"] == "rejected"
    assert w["requested_at"].tzinfo is not None and w["rejected_at"].tzinfo is not None

    events = event_params(batch)
    assert [p[0] for p in events] == sorted(p[0] for p in events)
    assert all(len(p) == len(EVENT_COLUMNS) for p in events)
    assert {json.loads(p[4])["type"] for p in events} >= {
        "funded-account.created",
        "withdrawal.requested",
        "withdrawal.rejected",
    }


def test_upserts_only_take_a_newer_version_and_facts_go_in_once() -> None:
    assert "ON CONFLICT (id) DO UPDATE" in UPSERT_ACCOUNT
    assert UPSERT_ACCOUNT.endswith("WHERE funded_accounts.version < EXCLUDED.version")
    assert "ON CONFLICT (funded_account_id) DO UPDATE" in UPSERT_BALANCES
    assert UPSERT_BALANCES.endswith("WHERE funded_virtual_accounts.version < EXCLUDED.version")
    assert UPSERT_WITHDRAWAL.endswith("WHERE withdrawals.version < EXCLUDED.version")
    assert "status = EXCLUDED.status" in UPSERT_WITHDRAWAL
    assert "reversed_total = EXCLUDED.reversed_total" in UPSERT_WITHDRAWAL
    for column in DAY_COLUMNS:
        assert f"{column} = EXCLUDED.{column}" in UPSERT_BALANCES
    assert UPSERT_BALANCES.count("$") == len(BALANCE_COLUMNS)
    assert UPSERT_WITHDRAWAL.count("$") == len(WITHDRAWAL_COLUMNS)
    assert INSERT_EVENT.endswith("ON CONFLICT (event_id) DO NOTHING")
    assert UPSERT_ACCOUNT.count("$") == len(ACCOUNT_COLUMNS)


def test_connection_settings() -> None:
    assert (
        asyncpg_dsn("postgresql+asyncpg://postgres:p%40ss@db:5433/ff")
        == "postgresql://postgres:p%40ss@db:5433/ff"
    )
    assert Settings.from_env({}).db_schema is None
    assert Settings.from_env({"FUNDEDFLOW_DB_SCHEMA": "t_1"}).db_schema == "t_1"


# --- the writer's retries and metrics ------------------------------------------------------


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[Batch] = []

    async def write(self, batch: Batch) -> int:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("database away")
        self.batches.append(batch)
        return batch.row_count


class RecordingDeadLetters:
    """sink.dlq: keeps what was stored; fails the first `failures` sends."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts = 0
        self.stored: list[SetAside] = []

    async def send(self, items: Sequence[SetAside]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("sink.dlq away")
        self.stored += items


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_doubles_from_half_a_second_to_five() -> None:
    assert [backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert backoff(100_000) == 5.0


async def test_a_failing_batch_is_retried_until_it_commits_and_the_metrics_say_so() -> None:
    _, snaps, facts, _ = story_with_withdrawal()
    records = [SinkRecord(r.kind, r.value, 1000.0 + i) for i, r in enumerate([*snaps, *facts])]
    store = FlakyStore(failures=3)
    clock = Clock(now=1100.0)
    metrics = new_metrics()
    observed: list[dict[str, Any]] = []

    async def sleep(seconds: float) -> None:
        observed.append(dict(metrics))
        await clock.sleep(seconds)

    writer = SinkWriter(store, metrics, RecordingDeadLetters(), clock=clock, sleep=sleep)
    batch = await writer.write(records)
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(store.batches) == 1 and store.batches[0] is batch
    # While failing: counted, flagged, and the lag is the age of the oldest waiting record.
    assert [m["errors"] for m in observed] == [1, 2, 3]
    assert all(m["failing"] == 1 and m["pending_records"] == len(records) for m in observed)
    assert observed[0]["lag_seconds"] == 100.0 and observed[2]["lag_seconds"] == 101.5
    assert "database away" in observed[0]["last_error"]
    # After the commit: the lag is the newest record's age at the commit.
    assert metrics["batches"] == 1 and metrics["records"] == len(records)
    assert metrics["rows"] == batch.row_count and metrics["errors"] == 3
    assert metrics["failing"] == 0 and metrics["pending_records"] == 0
    assert metrics["last_commit_at"] == 1103.5
    assert metrics["last_record_at"] == 1000.0 + len(records) - 1
    assert metrics["lag_seconds"] == pytest.approx(1103.5 - metrics["last_record_at"])


async def test_the_lag_timer_only_moves_the_lag_while_failing() -> None:
    clock = Clock(now=50.0)
    metrics = new_metrics()
    writer = SinkWriter(
        FlakyStore(0), metrics, RecordingDeadLetters(), clock=clock, sleep=clock.sleep
    )
    writer.refresh_lag()
    assert metrics["lag_seconds"] is None
    await writer.write([SinkRecord(SNAPSHOT, dumps(snapshot(Story().state)), 45.0)])
    assert metrics["lag_seconds"] == 5.0
    clock.now = 80.0
    writer.refresh_lag()
    assert metrics["lag_seconds"] == 5.0


async def test_unreadable_records_are_counted_and_skipped() -> None:
    metrics = new_metrics()
    store = FlakyStore(0)
    writer = SinkWriter(store, metrics, RecordingDeadLetters())
    await writer.write([SinkRecord(SNAPSHOT, b"nope"), SinkRecord(SNAPSHOT, None)])
    assert metrics["invalid"] == 2 and metrics["batches"] == 1 and metrics["records"] == 2
    assert metrics["rows"] == 0


# --- records the database refuses ---------------------------------------------------------


def _holds_nul(value: object) -> bool:
    # A NUL in a text column, or the \u0000 escape in a jsonb payload (raw JSON text).
    return isinstance(value, str) and ("\x00" in value or "\\u0000" in value)


class RefusingStore:
    """PostgreSQL as far as the sink can tell: refuses a NUL anywhere in a batch (the whole
    transaction fails, as a real one does), optionally after some outages; keeps what it
    committed, newest version per row, as the upserts do."""

    def __init__(self, outages: int = 0, outage_on_call: int | None = None) -> None:
        self.outages = outages
        self.outage_on_call = outage_on_call
        self.calls = 0
        self.accounts: dict[str, dict[str, Any]] = {}
        self.withdrawals: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}

    async def write(self, batch: Batch) -> int:
        self.calls += 1
        if self.outages:
            self.outages -= 1
            raise ConnectionRefusedError("database away")
        if self.calls == self.outage_on_call:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        if batch.empty:
            return 0
        rows = [
            *(r.account for r in batch.accounts.values()),
            *(r.balances for r in batch.accounts.values()),
            *batch.withdrawals.values(),
            *batch.events.values(),
        ]
        if any(_holds_nul(v) for row in rows for v in row.values()):
            raise asyncpg.exceptions.CharacterNotInRepertoireError(
                'invalid byte sequence for encoding "UTF8": 0x00'
            )
        for acct, got in batch.accounts.items():
            if acct not in self.accounts or self.accounts[acct]["version"] < got.version:
                self.accounts[acct] = got.account
        for wid, w in batch.withdrawals.items():
            if wid not in self.withdrawals or self.withdrawals[wid]["version"] < w["version"]:
                self.withdrawals[wid] = w
        for eid, e in batch.events.items():
            self.events.setdefault(eid, e)
        return batch.row_count


def from_kafka(records: Sequence[SinkRecord]) -> list[SinkRecord]:
    """The records as the consumer hands them over: with topic, partition, offset and key."""
    return [
        replace(r, topic=f"p.{r.kind}", partition=i % 3, offset=100 + i, key=b"k%d" % i)
        for i, r in enumerate(records)
    ]


def refused_mix() -> tuple[list[SinkRecord], dict[str, Any]]:
    """A good account's story with, among its records, a fact whose payload holds a NUL, and
    another account whose newest snapshot has a NUL in `closure_reason` (its older one is
    good)."""
    story, snaps, facts, wid = story_with_withdrawal()
    bad_fact = {**json.loads(facts[0].value or b""), "event_id": "e-nul", "note": "a\x00b"}
    other = Story(assessment_id="asm_other")
    older = snap(other, other.last)
    other.trade("10.00")
    s = snapshot(other.state)
    bad_snap = {**s, "account": {**s["account"], "closure_reason": "x\x00y"}}
    records = from_kafka(
        [
            *snaps[:2],
            SinkRecord(bad_fact["type"], dumps(bad_fact)),
            older,
            *facts,
            SinkRecord(SNAPSHOT, dumps(bad_snap)),
            *snaps[2:],
        ]
    )
    return records, {
        "story": story,
        "wid": wid,
        "facts": facts,
        "other": other,
        "older_version": json.loads(older.value or b"")["version"],
        "bad": [records[2], records[4 + len(facts)]],
    }


async def test_a_refused_record_is_set_aside_once_and_the_rest_of_the_batch_commits() -> None:
    records, x = refused_mix()
    store = RefusingStore()
    dlq = RecordingDeadLetters()
    metrics = new_metrics()
    clock = Clock(now=10.0)
    writer = SinkWriter(store, metrics, dlq, clock=clock, sleep=clock.sleep)
    await writer.write(records)
    # The good rows are in: the first account as of its newest snapshot, every good fact,
    # and the other account as of its older snapshot, its newest being refused.
    story = x["story"]
    assert store.accounts[story.account_id]["version"] == story.state.version
    assert store.withdrawals[x["wid"]]["status"] == "rejected"
    good_ids = {json.loads(r.value or b"")["event_id"] for r in x["facts"]}
    assert set(store.events) == good_ids
    other = store.accounts[x["other"].account_id]
    assert other["version"] == x["older_version"] < x["other"].state.version
    assert other["closure_reason"] is None
    # The refused records, each exactly once, with where they came from and why.
    assert [item.record for item in dlq.stored] == x["bad"]
    assert all(
        item.reason.startswith("SQLSTATE 22021 CharacterNotInRepertoireError")
        for item in dlq.stored
    )
    assert metrics["set_aside"] == 2 and metrics["errors"] == 0 and metrics["invalid"] == 0
    assert metrics["batches"] == 1 and metrics["records"] == len(records)
    assert metrics["failing"] == 0 and metrics["pending_records"] == 0
    assert clock.sleeps == []  # nothing was retried
    # Halving: a few transactions, not one per record.
    assert store.calls <= 1 + 4 * math.ceil(math.log2(len(records)))
    first = x["bad"][0]
    assert dict(SinkDeadLetters.headers(dlq.stored[0])) == {
        "reason": dlq.stored[0].reason.encode(),
        "source-topic": f"p.{first.kind}".encode(),
        "source-partition": str(first.partition).encode(),
        "source-offset": str(first.offset).encode(),
    }


async def test_a_batch_without_refused_records_is_one_transaction_and_sets_nothing_aside() -> None:
    _, snaps, facts, _ = story_with_withdrawal()
    store = RefusingStore()
    dlq = RecordingDeadLetters()
    metrics = new_metrics()
    await SinkWriter(store, metrics, dlq).write(from_kafka([*snaps, *facts]))
    assert store.calls == 1 and dlq.attempts == 0 and metrics["set_aside"] == 0


async def test_outages_are_still_retried_and_the_refused_record_is_set_aside_once() -> None:
    records, x = refused_mix()
    # Two outages before anything, then one while the batch is being halved.
    store = RefusingStore(outages=2, outage_on_call=6)
    dlq = RecordingDeadLetters()
    metrics = new_metrics()
    clock = Clock(now=10.0)
    writer = SinkWriter(store, metrics, dlq, clock=clock, sleep=clock.sleep)
    await writer.write(records)
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert metrics["errors"] == 3 and "ConnectionDoesNotExistError" in metrics["last_error"]
    assert [item.record for item in dlq.stored] == x["bad"] and dlq.attempts == 1
    assert metrics["set_aside"] == 2 and metrics["batches"] == 1
    assert set(store.events) == {json.loads(r.value or b"")["event_id"] for r in x["facts"]}


async def test_an_error_not_about_the_content_retries_the_batch_and_sets_nothing_aside() -> None:
    class ShutdownThenOk(RefusingStore):
        async def write(self, batch: Batch) -> int:
            if self.calls < 2:
                self.calls += 1
                raise asyncpg.exceptions.AdminShutdownError("terminating connection")
            return await super().write(batch)

    _, snaps, facts, _ = story_with_withdrawal()
    store = ShutdownThenOk()
    dlq = RecordingDeadLetters()
    metrics = new_metrics()
    clock = Clock(now=10.0)
    await SinkWriter(store, metrics, dlq, clock=clock, sleep=clock.sleep).write(
        from_kafka([*snaps, *facts])
    )
    assert clock.sleeps == [0.5, 1.0] and metrics["errors"] == 2
    assert dlq.attempts == 0 and metrics["set_aside"] == 0 and len(store.events) == len(facts)


async def test_a_sink_dlq_outage_is_retried_without_writing_again_and_drops_nothing() -> None:
    records, x = refused_mix()
    store = RefusingStore()
    dlq = RecordingDeadLetters(failures=3)
    metrics = new_metrics()
    clock = Clock(now=10.0)
    observed: list[dict[str, Any]] = []

    async def sleep(seconds: float) -> None:
        observed.append(dict(metrics))
        await clock.sleep(seconds)

    writer = SinkWriter(store, metrics, dlq, clock=clock, sleep=sleep)
    await writer.write(records)
    calls_for_the_database = store.calls
    assert clock.sleeps == [0.5, 1.0, 2.0] and dlq.attempts == 4
    assert all(m["failing"] == 1 and m["set_aside"] == 0 for m in observed)
    assert "sink.dlq away" in observed[0]["last_error"]
    assert [item.record for item in dlq.stored] == x["bad"]
    assert metrics["set_aside"] == 2 and metrics["errors"] == 3 and metrics["failing"] == 0
    # The database part was done once (as many transactions as a pass without the outage);
    # only the send was tried again.
    baseline = RefusingStore()
    await SinkWriter(baseline, new_metrics(), RecordingDeadLetters()).write(records)
    assert calls_for_the_database == baseline.calls


async def test_an_unreadable_record_is_still_invalid_and_counted_once() -> None:
    records, x = refused_mix()
    unreadable = SinkRecord(SNAPSHOT, b"{nope", topic="p.s", partition=0, offset=7)
    store = RefusingStore()
    dlq = RecordingDeadLetters()
    metrics = new_metrics()
    await SinkWriter(store, metrics, dlq).write([unreadable, *records])
    assert metrics["invalid"] == 1 and metrics["set_aside"] == 2
    assert [item.record for item in dlq.stored] == x["bad"]


REFUSED = [
    asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
    asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
    asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax for type json"),
    asyncpg.exceptions.StringDataRightTruncationError("value too long"),
    asyncpg.exceptions.DataError("invalid input for query argument $1"),  # asyncpg's own
    asyncpg.exceptions.CheckViolationError("violates check constraint"),
    asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    asyncpg.exceptions.ForeignKeyViolationError("violates foreign key constraint"),
    asyncpg.exceptions.NotNullViolationError("null value in column"),
]
NOT_REFUSED = [
    ConnectionRefusedError("refused"),
    ConnectionResetError("reset"),
    OSError("no route to host"),
    TimeoutError(),
    asyncpg.exceptions.PostgresConnectionError("connection"),
    asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    asyncpg.exceptions.InterfaceError("pool is closed"),
    asyncpg.exceptions.UndefinedTableError("relation does not exist"),
    asyncpg.exceptions.UndefinedColumnError("column does not exist"),
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.SerializationError("could not serialize"),
    asyncpg.exceptions.TooManyConnectionsError("too many clients"),
    RuntimeError("a bug"),
]


@pytest.mark.parametrize("exc", REFUSED, ids=lambda e: type(e).__name__)
def test_errors_about_the_data_are_refusals(exc: asyncpg.PostgresError) -> None:
    reason = refused_reason(exc)
    assert reason is not None and reason.startswith(f"SQLSTATE {exc.sqlstate} ")
    assert str(exc) in reason


@pytest.mark.parametrize("exc", NOT_REFUSED, ids=lambda e: type(e).__name__)
def test_outages_and_other_errors_are_not_refusals(exc: Exception) -> None:
    assert refused_reason(exc) is None


def test_a_reason_is_one_line() -> None:
    exc = asyncpg.exceptions.CheckViolationError(
        'violates check constraint "ck"\nDETAIL:  Failing row contains (w-1, paid).'
    )
    assert refused_reason(exc) == (
        'SQLSTATE 23514 CheckViolationError: violates check constraint "ck" '
        "DETAIL:  Failing row contains (w-1, paid)."
    )


def test_a_long_reason_is_cut() -> None:
    reason = refused_reason(asyncpg.exceptions.DataError("x" * 10_000))
    assert reason is not None and len(reason) == 1000 and reason.endswith("...")


async def test_a_sink_dlq_send_that_hangs_fails_in_bounded_time() -> None:
    class Hanging(SinkDeadLetters):
        async def _send(self, items: Sequence[SetAside]) -> None:
            await asyncio.sleep(3600)

    dlq = Hanging("127.0.0.1:1", "sink.dlq", "test", timeout=0.05)
    item = SetAside(SinkRecord(SNAPSHOT, b"{}"), "SQLSTATE 22021 x")
    with pytest.raises(TimeoutError, match=r"sink\.dlq did not take 1 records"):
        await dlq.send([item])
    await dlq.close()


# --- reconcile's comparison ----------------------------------------------------------------


def database_of(story: Story) -> dict[str, dict[str, dict[str, Any]]]:
    expected, problems = expected_rows({story.account_id: story.state})
    assert not problems
    return {
        "funded_accounts": {k: dict(v) for k, v in expected.accounts.items()},
        "funded_virtual_accounts": {k: dict(v) for k, v in expected.balances.items()},
        "withdrawals": {k: dict(v) for k, v in expected.withdrawals.items()},
    }


def test_reconcile_finds_nothing_when_the_rows_match() -> None:
    story, _, _, _ = story_with_withdrawal()
    assert compare({story.account_id: story.state}, database_of(story)) == []


def test_reconcile_lists_every_kind_of_difference() -> None:
    story, _, _, wid = story_with_withdrawal()
    acct = story.account_id
    db = database_of(story)
    db["funded_accounts"][acct]["status"] = "closed"
    db["funded_accounts"][acct]["version"] -= 1
    del db["funded_virtual_accounts"][acct]
    db["withdrawals"][wid]["version"] = 1  # a withdrawal's version is not compared
    db["withdrawals"]["w-ghost"] = {**db["withdrawals"][wid], "id": "w-ghost"}
    db["funded_accounts"]["fa_ghost"] = {**db["funded_accounts"][acct], "id": "fa_ghost"}
    other = Story(assessment_id="asm_other")
    diffs = compare({acct: story.state, other.account_id: other.state}, db)
    text = [str(d) for d in diffs]
    assert Difference("funded_virtual_accounts", acct, "missing in the database") in diffs
    (status,) = [t for t in text if t.startswith(f"funded_accounts {acct}:")]
    assert "status: database 'closed', tables 'active'" in status
    assert f"version: database {story.state.version - 1}, tables {story.state.version}" in status
    assert "funded_accounts fa_ghost: not in the tables (unknown account)" in text
    assert f"withdrawals w-ghost: no such withdrawal in the tables (account {acct})" in text
    assert f"funded_accounts {other.account_id}: missing in the database" in text
    assert f"funded_virtual_accounts {other.account_id}: missing in the database" in text
    assert not [t for t in text if t.startswith(f"withdrawals {wid}")]
    assert len(diffs) == 6


def test_reconcile_shows_money_and_times_as_on_the_wire() -> None:
    story, _, _, _ = story_with_withdrawal()
    db = database_of(story)
    acct = story.account_id
    db["funded_virtual_accounts"][acct]["current_balance"] = Decimal("1.5")
    db["funded_accounts"][acct]["activated_at"] = datetime(2026, 1, 1, tzinfo=UTC)
    text = [str(d) for d in compare({acct: story.state}, db)]
    assert any("current_balance: database 1.50, tables 105000.00" in t for t in text)
    assert any(
        "activated_at: database 2026-01-01T00:00:00Z, tables 2026-11-23T10:00:00Z" in t
        for t in text
    )


def test_reconcile_compares_a_withdrawals_reversed_total() -> None:
    story, _, _, wid = story_with_withdrawal()
    db = database_of(story)
    assert db["withdrawals"][wid]["reversed_total"] == Decimal("0.00")
    db["withdrawals"][wid]["reversed_total"] = Decimal("12.34")
    (diff,) = compare({story.account_id: story.state}, db)
    assert diff.table == "withdrawals" and diff.row_id == wid
    assert diff.detail == "reversed_total: database 12.34, tables 0.00"


def test_text_that_cannot_be_encoded_is_the_records_content_not_an_outage() -> None:
    from app.sink_db import refused_reason

    try:
        "\ud800".encode()
    except UnicodeEncodeError as exc:
        assert refused_reason(exc) is not None
    assert refused_reason(OSError("connection refused")) is None


def test_reconcile_spots_a_wrong_day_column_and_shows_it_as_on_the_wire() -> None:
    story = pack_story()
    acct = story.account_id
    db = database_of(story)
    assert compare({acct: story.state}, db) == []
    row = db["funded_virtual_accounts"][acct]
    assert row["trading_day"] == date(2026, 11, 22) and row["winning_days"] == 1
    row["trading_day"] = date(2026, 11, 21)
    row["day_pnl"] = Decimal("-5")
    row["locked_until"] = None
    (diff,) = compare({acct: story.state}, db)
    assert diff.table == "funded_virtual_accounts" and diff.row_id == acct
    assert diff.detail == (
        "trading_day: database 2026-11-21, tables 2026-11-22; "
        "day_pnl: database -5.00, tables 200.00; "
        "locked_until: database None, tables 2026-11-23T23:00:00Z"
    )
    # A legacy account's day columns are NULL: a value there is a difference too.
    legacy, _, _, _ = story_with_withdrawal()
    db = database_of(legacy)
    assert db["funded_virtual_accounts"][legacy.account_id]["trading_days"] is None
    db["funded_virtual_accounts"][legacy.account_id]["trading_days"] = 0
    (diff,) = compare({legacy.account_id: legacy.state}, db)
    assert diff.detail == "trading_days: database 0, tables None"
