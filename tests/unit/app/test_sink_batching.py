"""The pure parts of the PostgreSQL sink: records to rows, collapsing, statement parameters,
the retry loop's metrics, and reconcile's comparison. No services."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agents.sink import SinkWriter, backoff, new_metrics
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
    withdrawal_params,
)
from domain.account import Outcome
from domain.snapshots import snapshot, withdrawal_ids_in
from tests.unit.domain.story import Story


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

    writer = SinkWriter(store, metrics, clock=clock, sleep=sleep)
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
    writer = SinkWriter(FlakyStore(0), metrics, clock=clock, sleep=clock.sleep)
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
    writer = SinkWriter(store, metrics)
    await writer.write([SinkRecord(SNAPSHOT, b"nope"), SinkRecord(SNAPSHOT, None)])
    assert metrics["invalid"] == 2 and metrics["batches"] == 1 and metrics["records"] == 2
    assert metrics["rows"] == 0


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
