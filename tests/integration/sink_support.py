"""Helpers for the PostgreSQL sink tests: a worker on its own schema, waiting until the
consumer group has committed everything, and the database as plain rows."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka_admin import existing_partition_counts
from app.settings import Settings
from app.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNT_SNAPSHOTS,
    ASSESSMENT_COMPLETED,
    FACT_TOPICS,
    PAYOUT_REQUESTS,
    TRADES,
)
from domain.snapshots import snapshot
from domain.state import AccountState
from domain.timestamps import parse_ts
from tests.integration.conftest import Services, pg_dsn
from tests.integration.harness import REPO, Kafka, Worker, worker_env

SINK_TOPICS: tuple[str, ...] = (ACCOUNT_SNAPSHOTS, *FACT_TOPICS)
STREAM_TOPICS: tuple[str, ...] = (ASSESSMENT_COMPLETED, TRADES, ACCOUNT_COMMANDS, PAYOUT_REQUESTS)

TABLES = ("funded_accounts", "funded_virtual_accounts", "withdrawals", "account_events")
KEYS = {
    "funded_accounts": "id",
    "funded_virtual_accounts": "funded_account_id",
    "withdrawals": "id",
    "account_events": "event_id",
}
MONEY = {
    "starting_balance",
    "current_balance",
    "peak_balance",
    "realized_pnl",
    "unrealized_pnl",
    "total_withdrawals",
    "amount",
    "reversed_total",
    "day_anchor",
    "day_pnl",
}
TIMES = {
    "activated_at",
    "closed_at",
    "updated_at",
    "requested_at",
    "approved_at",
    "completed_at",
    "rejected_at",
    "day_resets_at",
    "locked_until",
}
DATES = {"trading_day"}
# A rule-pack account's day on its balances row (migration 0003); NULL for a legacy account,
# whose snapshot has none of these keys.
DAY_COLUMNS = (
    "trading_day",
    "day_resets_at",
    "day_anchor",
    "day_pnl",
    "locked_until",
    "trading_days",
    "winning_days",
)


def sink_env(services: Services, prefix: str, schema: str, **extra: str) -> dict[str, str]:
    return worker_env(services, prefix, FUNDEDFLOW_DB_SCHEMA=schema, **extra)


def start_worker(env: dict[str, str], tmp: Path) -> Worker:
    return Worker(env, tmp / "data", tmp / "worker.log").start()


def settings_of(env: Mapping[str, str]) -> Settings:
    return Settings.from_env(env)


# --- Kafka: how far the worker's group is ---------------------------------------------------


async def behind(services: Services, prefix: str, bases: Iterable[str]) -> dict[str, int]:
    """Records not yet committed by the worker's group, per topic-partition (only > 0)."""
    topics = [f"{prefix}{b}" for b in bases]
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        counts = await existing_partition_counts(admin, topics)
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        # The stream topics are the worker group's; the sink reads its own in a group of its
        # own (agents/sink.py).
        committed = await admin.list_consumer_group_offsets(f"{prefix}fundedflow")
        committed.update(await admin.list_consumer_group_offsets(f"{prefix}fundedflow-sink"))
    finally:
        await admin.close()
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=services.kafka, group_id=None)
    await consumer.start()
    try:
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    out = {}
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        if end[tp] > done:
            out[f"{tp.topic}:{tp.partition}"] = end[tp] - done
    return out


async def wait_caught_up(
    kafka: Kafka, bases: Iterable[str], timeout: float = 60, stable: int = 2
) -> None:
    """Until the group has committed every record of the topics, `stable` checks in a row."""
    wanted = list(bases)
    deadline = time.monotonic() + timeout
    in_a_row = 0
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        kafka.check_workers()
        last = await behind(kafka.services, kafka.prefix, wanted)
        in_a_row = 0 if last else in_a_row + 1
        if in_a_row >= stable:
            return
        await asyncio.sleep(0.5)
    tails = "\n".join(w.tail(3000) for w in kafka.workers)
    raise AssertionError(f"not caught up after {timeout}s: {last}\n{tails}")


async def wait_all_caught_up(kafka: Kafka, timeout: float = 60) -> None:
    """The stream first (so every snapshot and fact exists), then the sink."""
    await wait_caught_up(kafka, STREAM_TOPICS, timeout=timeout)
    await wait_caught_up(kafka, SINK_TOPICS, timeout=timeout)


# --- PostgreSQL ----------------------------------------------------------------------------


async def db_rows(services: Services, schema: str) -> dict[str, dict[str, dict[str, Any]]]:
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": schema})
    try:
        out = {}
        for table in TABLES:
            records = await conn.fetch(f"SELECT * FROM {table}")
            out[table] = {r[KEYS[table]]: dict(r) for r in records}
        return out
    finally:
        await conn.close()


async def db_count(services: Services, schema: str, table: str) -> int:
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def _typed(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col, value in row.items():
        if value is not None and col in MONEY:
            out[col] = Decimal(value)
        elif value is not None and col in TIMES:
            out[col] = parse_ts(value)
        elif value is not None and col in DATES:
            out[col] = date.fromisoformat(value)
        else:
            out[col] = value
    return out


def expected_from_tables(
    accounts: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """The rows each account in the tables should have (as `Kafka.accounts()` returns them).

    Computed here from the domain's snapshot, without the sink's code. A withdrawal row's
    `version` is left out: it is the version of the change that last touched it.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {
        "funded_accounts": {},
        "funded_virtual_accounts": {},
        "withdrawals": {},
    }
    for value in accounts.values():
        state = AccountState.from_dict(value["state"])
        snap = snapshot(state, list(state.withdrawals))
        out["funded_accounts"][state.account_id] = {
            **_typed(snap["account"]),
            "version": state.version,
        }
        out["funded_virtual_accounts"][state.account_id] = {
            **dict.fromkeys(DAY_COLUMNS),
            **_typed(snap["balances"]),
            "version": state.version,
        }
        for w in snap["withdrawals"]:
            out["withdrawals"][w["id"]] = _typed(w)
    return out


def differences(
    expected: Mapping[str, Mapping[str, Mapping[str, Any]]],
    actual: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> list[str]:
    """Every way the database rows differ from the expected ones (empty when they agree)."""
    out = []
    for table, want_rows in expected.items():
        got_rows = actual[table]
        for key in sorted(set(want_rows) | set(got_rows)):
            want, got = want_rows.get(key), got_rows.get(key)
            if want is None or got is None:
                out.append(f"{table} {key}: {'missing' if got is None else 'unexpected'}")
                continue
            for col, value in want.items():
                if got[col] != value:
                    out.append(f"{table} {key}.{col}: db {got[col]!r} != {value!r}")
    return out


# --- the stack -----------------------------------------------------------------------------


def reconcile_cli(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`fundedflow reconcile` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "reconcile"],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def stack(*args: str, timeout: float = 90) -> None:
    subprocess.run(
        ["scripts/stack.sh", *args], cwd=REPO, check=True, timeout=timeout, capture_output=True
    )
