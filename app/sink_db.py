"""The PostgreSQL side of the sink: records to rows, one batch per transaction.

The pure part turns the records of one batch (account snapshots and facts, CONTRACT.md
section 6) into the rows to write, collapsed to the newest version of each row, and builds
the parameters of the statements. `SinkDatabase` writes a collapsed batch in one transaction
with upserts that only take a newer `version`, so a replay never moves a row backwards, and
inserts each fact into `account_events` once per `event_id`.

Money goes to PostgreSQL as `Decimal` (NUMERIC(18,2)), times as aware UTC datetimes, a
trading day as a `date`, the day counters as `int`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.codec import WireError
from domain.money import InvalidNumber, parse_money
from domain.timestamps import InvalidTimestamp, parse_ts

__all__ = [
    "ACCOUNT_COLUMNS",
    "BALANCE_COLUMNS",
    "EVENT_COLUMNS",
    "REFUSED_SQLSTATE_CLASSES",
    "SNAPSHOT",
    "WITHDRAWAL_COLUMNS",
    "AccountRows",
    "Batch",
    "InvalidRecord",
    "Row",
    "SinkDatabase",
    "SinkRecord",
    "account_params",
    "asyncpg_dsn",
    "balance_params",
    "collapse",
    "connect",
    "event_params",
    "parse_fact",
    "parse_snapshot",
    "refused_reason",
    "withdrawal_params",
]

# The kind of a record that is not a fact; facts carry their topic name as kind.
SNAPSHOT = "snapshot"

ACCOUNT_COLUMNS: tuple[str, ...] = (
    "id",
    "user_id",
    "assessment_id",
    "tier_id",
    "status",
    "activated_at",
    "closed_at",
    "closure_reason",
    "version",
)
BALANCE_COLUMNS: tuple[str, ...] = (
    "id",
    "funded_account_id",
    "starting_balance",
    "current_balance",
    "peak_balance",
    "realized_pnl",
    "unrealized_pnl",
    "total_withdrawals",
    "updated_at",
    # A rule-pack account's day (migration 0003, `domain.snapshots.day_figures`); NULL for a
    # legacy tier.
    "trading_day",
    "day_resets_at",
    "day_anchor",
    "day_pnl",
    "locked_until",
    "trading_days",
    "winning_days",
    "version",
)
WITHDRAWAL_COLUMNS: tuple[str, ...] = (
    "id",
    "funded_account_id",
    "user_id",
    "amount",
    "status",
    "requested_at",
    "approved_at",
    "completed_at",
    "rejected_at",
    "rejection_reason",
    "stripe_payout_id",
    "approved_by",
    "reversed_total",
    "version",
)
EVENT_COLUMNS: tuple[str, ...] = ("event_id", "type", "account_id", "occurred_at", "payload")

_MONEY = frozenset(
    {
        "starting_balance",
        "current_balance",
        "peak_balance",
        "realized_pnl",
        "unrealized_pnl",
        "total_withdrawals",
        "amount",
        "reversed_total",
    }
)
_OPTIONAL_MONEY = frozenset({"day_anchor", "day_pnl"})
_REQUIRED_TIMES = frozenset({"activated_at", "updated_at", "requested_at"})
_OPTIONAL_TIMES = frozenset(
    {"closed_at", "approved_at", "completed_at", "rejected_at", "day_resets_at", "locked_until"}
)
_OPTIONAL_DATES = frozenset({"trading_day"})
_OPTIONAL_COUNTS = frozenset({"trading_days", "winning_days"})
# PostgreSQL `integer`.
_MAX_COUNT = 2**31 - 1
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_OPTIONAL_TEXT = frozenset(
    {"closure_reason", "rejection_reason", "stripe_payout_id", "approved_by"}
)
# Columns added after the first snapshots were sent: an older record without the key means
# this value (a withdrawal's `reversed_total` came with migration 0002; nothing was reversed).
# The day columns of migration 0003 have no entry: a record without them (a legacy account's,
# or one sent before them) means NULL.
_DEFAULTS: Mapping[str, object] = {"reversed_total": "0.00"}


def _lenient_object(raw: bytes | None) -> dict[str, Any]:
    """A JSON object, read without the edge's text checks (app.codec refuses NUL and lone
    surrogates). The sink is the last line: a record whose text PostgreSQL refuses must reach
    the database, be refused there and be set aside on sink.dlq with its bytes, not skipped."""
    if not raw:
        raise WireError("empty value")
    try:
        obj = json.loads(raw, parse_float=Decimal)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


class InvalidRecord(ValueError):
    """A record the sink cannot turn into rows; the message says why."""


@dataclass(frozen=True)
class SinkRecord:
    """One Kafka record for the sink: `kind` is SNAPSHOT or the fact topic's base name.

    `topic`, `partition`, `offset` and `key` say where it came from: a record the database
    refuses is set aside with them (agents/sink.py).
    """

    kind: str
    value: bytes | None
    # Kafka timestamp, seconds since the epoch.
    timestamp: float | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None


Row = dict[str, Any]


@dataclass(frozen=True)
class AccountRows:
    version: int
    account: Row
    balances: Row


@dataclass
class Batch:
    """The rows of one batch, newest version per row, and what could not be read."""

    accounts: dict[str, AccountRows] = field(default_factory=dict)
    withdrawals: dict[str, Row] = field(default_factory=dict)
    events: dict[str, Row] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)
    records: int = 0
    oldest_timestamp: float | None = None
    newest_timestamp: float | None = None

    @property
    def row_count(self) -> int:
        return 2 * len(self.accounts) + len(self.withdrawals) + len(self.events)

    @property
    def empty(self) -> bool:
        return self.row_count == 0


# --- reading records ---------------------------------------------------------------------


def _money(value: object, name: str) -> Decimal:
    try:
        cents = parse_money(value)
    except InvalidNumber as exc:
        raise InvalidRecord(f"{name}: {exc.reason}") from None
    return Decimal(cents).scaleb(-2)


def _time(value: object, name: str) -> datetime:
    try:
        return parse_ts(value)
    except InvalidTimestamp as exc:
        raise InvalidRecord(f"{name}: {exc.reason}") from None


def _date(value: object, name: str) -> date:
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
        raise InvalidRecord(f"{name}: expected a date YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"{name}: not a date: {value!r}") from None


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise InvalidRecord(f"{name}: expected a count (0 to {_MAX_COUNT}), got {value!r}")
    return value


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRecord(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRecord(f"version: expected a non-negative integer, got {value!r}")
    return value


def _object(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRecord(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _row(data: Mapping[str, Any], columns: Sequence[str], version: int, where: str) -> Row:
    row: Row = {}
    for col in columns:
        if col == "version":
            row[col] = version
            continue
        value = data.get(col, _DEFAULTS.get(col))
        name = f"{where}.{col}"
        if col in _MONEY:
            row[col] = _money(value, name)
        elif col in _OPTIONAL_MONEY:
            row[col] = None if value is None else _money(value, name)
        elif col in _OPTIONAL_DATES:
            row[col] = None if value is None else _date(value, name)
        elif col in _OPTIONAL_COUNTS:
            row[col] = None if value is None else _count(value, name)
        elif col in _REQUIRED_TIMES:
            row[col] = _time(value, name)
        elif col in _OPTIONAL_TIMES:
            row[col] = None if value is None else _time(value, name)
        elif col in _OPTIONAL_TEXT:
            row[col] = None if value is None else _text(value, name)
        else:
            row[col] = _text(value, name)
    return row


def parse_snapshot(
    value: Mapping[str, Any],
) -> tuple[str, AccountRows, list[Row]]:
    """The rows of one snapshot (`domain.snapshots.snapshot`), typed for PostgreSQL."""
    account_id = _text(value.get("account_id"), "account_id")
    version = _version(value.get("version"))
    account = _row(_object(value.get("account"), "account"), ACCOUNT_COLUMNS, version, "account")
    balances = _row(
        _object(value.get("balances"), "balances"), BALANCE_COLUMNS, version, "balances"
    )
    if account["id"] != account_id or balances["funded_account_id"] != account_id:
        raise InvalidRecord(f"rows of another account than {account_id!r}")
    raw_withdrawals = value.get("withdrawals", [])
    if not isinstance(raw_withdrawals, list):
        raise InvalidRecord("withdrawals: expected a list")
    withdrawals = []
    for i, w in enumerate(raw_withdrawals):
        row = _row(_object(w, f"withdrawals[{i}]"), WITHDRAWAL_COLUMNS, version, "withdrawal")
        if row["funded_account_id"] != account_id:
            raise InvalidRecord(f"withdrawal {row['id']!r} of another account")
        withdrawals.append(row)
    return account_id, AccountRows(version, account, balances), withdrawals


def parse_fact(kind: str, raw: bytes, value: Mapping[str, Any]) -> Row:
    """The `account_events` row of one fact; `payload` is the fact itself (jsonb)."""
    fact_type = _text(value.get("type"), "type")
    if fact_type != kind:
        raise InvalidRecord(f"type {fact_type!r} read from topic {kind!r}")
    return {
        "event_id": _text(value.get("event_id"), "event_id"),
        "type": fact_type,
        "account_id": _text(value.get("account_id"), "account_id"),
        "occurred_at": _time(value.get("occurred_at"), "occurred_at"),
        "payload": raw.decode(),
    }


def collapse(records: Iterable[SinkRecord]) -> Batch:
    """One batch of records as rows: the newest version of each row, each fact once.

    Within one version the later record wins (an account's rows at one version are the same
    whichever snapshot carries them). Unreadable records are listed in `invalid`, not raised.
    """
    batch = Batch()
    for rec in records:
        batch.records += 1
        if rec.timestamp is not None:
            if batch.oldest_timestamp is None or rec.timestamp < batch.oldest_timestamp:
                batch.oldest_timestamp = rec.timestamp
            if batch.newest_timestamp is None or rec.timestamp > batch.newest_timestamp:
                batch.newest_timestamp = rec.timestamp
        try:
            if rec.value is None:
                raise InvalidRecord("empty value")
            value = _lenient_object(rec.value)
            if rec.kind == SNAPSHOT:
                account_id, rows, withdrawals = parse_snapshot(value)
                seen = batch.accounts.get(account_id)
                if seen is None or seen.version <= rows.version:
                    batch.accounts[account_id] = rows
                for w in withdrawals:
                    old = batch.withdrawals.get(w["id"])
                    if old is None or old["version"] <= w["version"]:
                        batch.withdrawals[w["id"]] = w
            else:
                row = parse_fact(rec.kind, rec.value, value)
                batch.events.setdefault(row["event_id"], row)
        except (InvalidRecord, WireError, UnicodeDecodeError) as exc:
            batch.invalid.append(f"{rec.kind}: {exc}")
    return batch


# --- what the database refuses ----------------------------------------------------------

# SQLSTATE classes of errors about the data sent, not about the database being reachable:
# 22 "data exception" (a NUL in text or jsonb, an untranslatable character, a numeric
# overflow, text too long, invalid text for a type; asyncpg also raises its 22000 DataError
# for an argument it cannot encode, such as a lone surrogate) and 23 "integrity constraint
# violation" (a check, a unique key, a foreign key). The same rows are refused again however
# often they are sent.
REFUSED_SQLSTATE_CLASSES = frozenset({"22", "23"})
_REASON_MAX = 1000


def refused_reason(exc: BaseException) -> str | None:
    """Why the database refused the rows sent, or None when the error is not about them (an
    outage, a timeout, a missing table: those are worth retrying)."""
    if isinstance(exc, UnicodeEncodeError):
        # Text that cannot be sent as UTF-8 at all (a lone surrogate): the record's content.
        return f"text not encodable as UTF-8: {exc.reason} at {exc.start}"
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if not isinstance(sqlstate, str) or sqlstate[:2] not in REFUSED_SQLSTATE_CLASSES:
        return None
    # One line (PostgreSQL's DETAIL, such as the failing row, comes on a line of its own).
    message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    reason = f"SQLSTATE {sqlstate} {type(exc).__name__}: {message}"
    # asyncpg's own DataError repeats the argument's value, which may be large.
    return reason if len(reason) <= _REASON_MAX else reason[: _REASON_MAX - 3] + "..."


# --- statements --------------------------------------------------------------------------


def _upsert(table: str, columns: Sequence[str], conflict: str) -> str:
    names = ", ".join(columns)
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("id", conflict))
    return (
        f"INSERT INTO {table} ({names}) VALUES ({values}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates} "
        f"WHERE {table}.version < EXCLUDED.version"
    )


UPSERT_ACCOUNT = _upsert("funded_accounts", ACCOUNT_COLUMNS, "id")
UPSERT_BALANCES = _upsert("funded_virtual_accounts", BALANCE_COLUMNS, "funded_account_id")
UPSERT_WITHDRAWAL = _upsert("withdrawals", WITHDRAWAL_COLUMNS, "id")
INSERT_EVENT = (
    f"INSERT INTO account_events ({', '.join(EVENT_COLUMNS)}) "
    "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (event_id) DO NOTHING"
)


def _params(rows: Iterable[Row], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in rows]


# Rows in key order: two writers of overlapping rows (a rebalance) lock them in one order.
def account_params(batch: Batch) -> list[tuple[Any, ...]]:
    return _params((batch.accounts[k].account for k in sorted(batch.accounts)), ACCOUNT_COLUMNS)


def balance_params(batch: Batch) -> list[tuple[Any, ...]]:
    return _params((batch.accounts[k].balances for k in sorted(batch.accounts)), BALANCE_COLUMNS)


def withdrawal_params(batch: Batch) -> list[tuple[Any, ...]]:
    return _params((batch.withdrawals[k] for k in sorted(batch.withdrawals)), WITHDRAWAL_COLUMNS)


def event_params(batch: Batch) -> list[tuple[Any, ...]]:
    return _params((batch.events[k] for k in sorted(batch.events)), EVENT_COLUMNS)


# --- connections -------------------------------------------------------------------------


def asyncpg_dsn(database_url: str) -> str:
    """A libpq-style DSN for asyncpg from the SQLAlchemy URL of DATABASE_URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _server_settings(schema: str | None) -> dict[str, str]:
    return {"search_path": schema} if schema else {}


async def connect(
    database_url: str, schema: str | None = None, timeout: float = 10
) -> asyncpg.Connection:
    """One connection with the schema (if any) as its search_path."""
    return await asyncpg.connect(
        asyncpg_dsn(database_url), timeout=timeout, server_settings=_server_settings(schema)
    )


class SinkDatabase:
    """Writes batches; the pool is made on first use, in the loop that uses it.

    After the server restarts, the pooled connections are broken: the write that finds one
    fails, the pool drops it, and the next attempt connects again.
    """

    def __init__(
        self,
        database_url: str,
        schema: str | None = None,
        *,
        pool_size: int = 2,
        connect_timeout: float = 10,
        command_timeout: float = 60,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._loop is not loop:
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.database_url),
                min_size=0,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.command_timeout,
                server_settings=_server_settings(self.schema),
                max_inactive_connection_lifetime=60,
            )
            self._loop = loop
        return self._pool

    async def write(self, batch: Batch) -> int:
        """Writes the batch in one transaction; returns the number of rows sent."""
        if batch.empty:
            return 0
        pool = await self._get_pool()
        async with pool.acquire(timeout=self.connect_timeout) as conn:
            async with conn.transaction():
                # Account rows first: withdrawals reference them.
                for sql, params in (
                    (UPSERT_ACCOUNT, account_params(batch)),
                    (UPSERT_BALANCES, balance_params(batch)),
                    (UPSERT_WITHDRAWAL, withdrawal_params(batch)),
                    (INSERT_EVENT, event_params(batch)),
                ):
                    if params:
                        await conn.executemany(sql, params)
        return batch.row_count

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
