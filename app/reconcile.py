"""`fundedflow reconcile`: every account in the tables against its rows in PostgreSQL.

The accounts table is read from its changelog topic (the latest value of every key, every
partition up to its end offset, with a group-less consumer that is assigned the partitions:
nothing is subscribed, so no topic is created and no group offset moves). Each account's
expected rows are the sink's rows of `domain.snapshots.snapshot(state, state.withdrawals)`;
they are compared with the `funded_accounts`, `funded_virtual_accounts` and `withdrawals` rows
in the database, column by column (`app.sink_db`'s column lists: a withdrawal's
`reversed_total` and a rule-pack account's day columns included: `trading_day`,
`day_resets_at`, `day_anchor`, `day_pnl`, `locked_until`, `trading_days`, `winning_days`, NULL
for a legacy account). A missing row, a column that differs (the account and balance rows'
`version` included) and a row of an account the tables do not know are each a difference.

Against a running system, the database may trail the tables by the sink's lag: run it when the
stream is quiet, or run it twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from asyncpg import InterfaceError, PostgresError

from app.codec import WireError, loads_object
from app.kafka_admin import bootstrap_list, existing_partition_counts
from app.settings import Settings
from app.sink_db import (
    ACCOUNT_COLUMNS,
    BALANCE_COLUMNS,
    WITHDRAWAL_COLUMNS,
    InvalidRecord,
    Row,
    connect,
    parse_snapshot,
)
from app.topics import ACCOUNTS_TABLE, WITHDRAWAL_ARCHIVE_TABLE, TopicNames
from domain.ids import account_of_withdrawal
from domain.snapshots import snapshot
from domain.state import AccountState
from domain.timestamps import format_ts
from domain.withdrawals import Withdrawal, read_archive_entry

# An archived withdrawal and its account (None in entries older than the account field).
Archived = tuple[str | None, Withdrawal]

__all__ = [
    "Difference",
    "Report",
    "compare",
    "expected_rows",
    "read_changelog",
    "read_database",
    "reconcile",
    "reconcile_report",
    "run",
]

ACCOUNTS = "funded_accounts"
BALANCES = "funded_virtual_accounts"
WITHDRAWALS = "withdrawals"
# A withdrawal row keeps the version of the last change that touched it, not the account's.
_WITHDRAWAL_COMPARED = tuple(c for c in WITHDRAWAL_COLUMNS if c != "version")
READ_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, order=True)
class Difference:
    """One row that is not what the tables say; `table` is a database table (or the tables)."""

    table: str
    row_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.table} {self.row_id}: {self.detail}"


@dataclass
class Expected:
    accounts: dict[str, Row] = field(default_factory=dict)
    balances: dict[str, Row] = field(default_factory=dict)  # by funded_account_id
    withdrawals: dict[str, Row] = field(default_factory=dict)


@dataclass
class Report:
    accounts: int
    rows: dict[str, int]
    differences: list[Difference]

    def summary(self) -> str:
        rows = ", ".join(f"{n} {t}" for t, n in self.rows.items())
        verdict = f"{len(self.differences)} difference(s)" if self.differences else "no differences"
        return f"reconcile: {self.accounts} accounts in the tables; database: {rows}; {verdict}"


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return repr(value)


def _column_differences(
    table: str, row_id: str, want: Row, got: Mapping[str, Any], columns: Sequence[str]
) -> list[Difference]:
    diffs = [
        f"{c}: database {_show(got.get(c))}, tables {_show(want[c])}"
        for c in columns
        if got.get(c) != want[c]
    ]
    return [Difference(table, row_id, "; ".join(diffs))] if diffs else []


def expected_rows(
    states: Mapping[str, AccountState], archived: Mapping[str, Archived] | None = None
) -> tuple[Expected, list[Difference]]:
    """The rows the sink should have written for each account (the newest snapshot of it),
    with its settled withdrawals that left the value for the archive (`archived`, by its key)."""
    out = Expected()
    problems = []
    by_account: dict[str, list[Withdrawal]] = {}
    for key, (owner_kept, w) in (archived or {}).items():
        # The archive's key is `account_id/withdrawal_id` (tables/accounts.py: account_key).
        owner = owner_kept or key.partition("/")[0] or account_of_withdrawal(w.withdrawal_id)
        if owner is not None:
            by_account.setdefault(owner, []).append(w)
    for account_id, state in states.items():
        gone = [
            w for w in by_account.get(account_id, []) if w.withdrawal_id not in state.withdrawals
        ]
        ids = [*state.withdrawals, *(w.withdrawal_id for w in gone)]
        try:
            _, rows, withdrawals = parse_snapshot(snapshot(state, ids, gone))
        except InvalidRecord as exc:
            problems.append(Difference("tables", account_id, f"no rows can be made: {exc}"))
            continue
        out.accounts[account_id] = rows.account
        out.balances[account_id] = rows.balances
        for row in withdrawals:
            out.withdrawals[row["id"]] = row
    return out, problems


def compare(
    states: Mapping[str, AccountState],
    database: Mapping[str, Mapping[str, Mapping[str, Any]]],
    archived: Mapping[str, Archived] | None = None,
) -> list[Difference]:
    """Differences between the tables' accounts and the database rows.

    `database` maps each table to its rows: `funded_accounts` and `withdrawals` by `id`,
    `funded_virtual_accounts` by `funded_account_id`.
    """
    expected, diffs = expected_rows(states, archived)
    for table, want_rows, columns in (
        (ACCOUNTS, expected.accounts, ACCOUNT_COLUMNS),
        (BALANCES, expected.balances, BALANCE_COLUMNS),
        (WITHDRAWALS, expected.withdrawals, _WITHDRAWAL_COMPARED),
    ):
        got_rows = database.get(table, {})
        for row_id in sorted(want_rows):
            got = got_rows.get(row_id)
            if got is None:
                diffs.append(Difference(table, row_id, "missing in the database"))
            else:
                diffs += _column_differences(table, row_id, want_rows[row_id], got, columns)
        for row_id in sorted(set(got_rows) - set(want_rows)):
            account = got_rows[row_id].get("funded_account_id", row_id)
            what = (
                f"no such withdrawal in the tables (account {account})"
                if table == WITHDRAWALS
                else "not in the tables (unknown account)"
            )
            diffs.append(Difference(table, row_id, what))
    return diffs


def _key(raw: bytes) -> str:
    try:
        key = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode(errors="replace")
    return key if isinstance(key, str) else raw.decode(errors="replace")


async def read_changelog(
    bootstrap_servers: str, topic: str, timeout: float = READ_TIMEOUT_SECONDS
) -> dict[str, bytes]:
    """The latest value of every key of a compacted topic, up to the end offsets of now."""
    servers = bootstrap_list(bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        counts = await existing_partition_counts(admin, [topic])
    finally:
        await admin.close()
    if not counts:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    latest: dict[str, bytes] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(counts[topic])]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout:.0f}s")
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= end[tp] or r.key is None:
                        continue
                    key = _key(r.key)
                    if r.value is None:
                        latest.pop(key, None)  # a tombstone: the key was deleted
                    else:
                        latest[key] = r.value
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return latest


def parse_accounts(values: Mapping[str, bytes]) -> tuple[dict[str, AccountState], list[Difference]]:
    states: dict[str, AccountState] = {}
    problems = []
    for key, raw in values.items():
        try:
            value = loads_object(raw)
            state = AccountState.from_dict(value["state"])
        except (WireError, KeyError, TypeError, ValueError) as exc:
            problems.append(Difference("tables", key, f"unreadable account value: {exc}"))
            continue
        if state.account_id != key:
            problems.append(Difference("tables", key, f"holds account {state.account_id!r}"))
            continue
        states[key] = state
    return states, problems


def parse_archive(
    values: Mapping[str, bytes],
) -> tuple[dict[str, Archived], list[Difference]]:
    archived: dict[str, Archived] = {}
    problems = []
    for key, raw in values.items():
        try:
            archived[key] = read_archive_entry(loads_object(raw))
        except (WireError, KeyError, TypeError, ValueError) as exc:
            problems.append(Difference("tables", key, f"unreadable archived withdrawal: {exc}"))
    return archived, problems


async def read_database(settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    conn = await connect(settings.database_url, settings.db_schema)
    try:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for table, columns, key in (
            (ACCOUNTS, ACCOUNT_COLUMNS, "id"),
            (BALANCES, BALANCE_COLUMNS, "funded_account_id"),
            (WITHDRAWALS, WITHDRAWAL_COLUMNS, "id"),
        ):
            records = await conn.fetch(f"SELECT {', '.join(columns)} FROM {table}")
            out[table] = {r[key]: dict(r) for r in records}
        return out
    finally:
        await conn.close()


async def reconcile_report(settings: Settings) -> Report:
    topic = TopicNames(settings.topic_prefix).changelog(ACCOUNTS_TABLE)
    values = await read_changelog(settings.kafka_bootstrap_servers, topic)
    states, problems = parse_accounts(values)
    archive_topic = TopicNames(settings.topic_prefix).changelog(WITHDRAWAL_ARCHIVE_TABLE)
    archived, unreadable = parse_archive(
        await read_changelog(settings.kafka_bootstrap_servers, archive_topic)
    )
    database = await read_database(settings)
    diffs = problems + unreadable + compare(states, database, archived)
    return Report(
        accounts=len(states),
        rows={table: len(rows) for table, rows in database.items()},
        differences=diffs,
    )


async def reconcile(settings: Settings) -> list[Difference]:
    """Every difference between the accounts table and PostgreSQL (empty when they agree)."""
    return (await reconcile_report(settings)).differences


async def run(settings: Settings, out: Callable[[str], Any] = print) -> int:
    """Prints one line per difference and a summary; 1 when there are differences, else 0."""
    try:
        report = await reconcile_report(settings)
    except (OSError, TimeoutError, KafkaError, PostgresError, InterfaceError) as exc:
        # The broker or the database cannot be read: say which, not a traceback.
        print(f"fundedflow reconcile: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for diff in report.differences:
        out(str(diff))
    out(report.summary())
    return 1 if report.differences else 0
