"""The migrations create the schema of CONTRACT.md section 8 and remove it again."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg
import pytest

from app.db import downgrade, migrate
from tests.integration.conftest import Services, pg_dsn

pytestmark = pytest.mark.integration

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
    "occurred_at",
    "day_resets_at",
    "locked_until",
}
# Migration 0003: a rule-pack account's day on its balances row, NULL for a legacy tier.
DAY_COLUMNS = {
    "trading_day": "date",
    "day_resets_at": "timestamp with time zone",
    "day_anchor": "numeric",
    "day_pnl": "numeric",
    "locked_until": "timestamp with time zone",
    "trading_days": "integer",
    "winning_days": "integer",
}


async def _query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def test_migrate_up_checks_schema_and_down(services: Services) -> None:
    dsn = pg_dsn(services)
    schema = f"m_{uuid.uuid4().hex[:12]}"
    asyncio.run(_query(dsn, f'CREATE SCHEMA "{schema}"'))
    try:
        migrate(services.database_url, schema=schema)
        cols = asyncio.run(
            _query(
                dsn,
                "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale, "
                "is_nullable FROM information_schema.columns WHERE table_schema = $1",
                schema,
            )
        )
        by_table: dict[str, dict[str, asyncpg.Record]] = {}
        for c in cols:
            by_table.setdefault(c["table_name"], {})[c["column_name"]] = c
        assert {
            "funded_accounts",
            "funded_virtual_accounts",
            "withdrawals",
            "account_events",
            "alembic_version",
        } <= set(by_table)
        assert {
            "id",
            "user_id",
            "assessment_id",
            "tier_id",
            "status",
            "activated_at",
            "closed_at",
            "closure_reason",
        } <= set(by_table["funded_accounts"])
        assert {
            "id",
            "funded_account_id",
            "starting_balance",
            "current_balance",
            "peak_balance",
            "realized_pnl",
            "unrealized_pnl",
            "total_withdrawals",
            "updated_at",
        } <= set(by_table["funded_virtual_accounts"])
        assert {
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
        } <= set(by_table["withdrawals"])
        assert {"event_id", "type", "account_id", "occurred_at", "payload"} == set(
            by_table["account_events"]
        )
        for table, columns in by_table.items():
            for name, c in columns.items():
                if name in MONEY:
                    assert (c["data_type"], c["numeric_precision"], c["numeric_scale"]) == (
                        "numeric",
                        18,
                        2,
                    ), (table, name)
                if name in TIMES:
                    assert c["data_type"] == "timestamp with time zone", (table, name)
        assert by_table["account_events"]["payload"]["data_type"] == "jsonb"
        assert by_table["withdrawals"]["reversed_total"]["is_nullable"] == "NO"
        balances = by_table["funded_virtual_accounts"]
        for name, data_type in DAY_COLUMNS.items():
            assert (balances[name]["data_type"], balances[name]["is_nullable"]) == (
                data_type,
                "YES",
            ), name
        assert_day_checks(dsn, schema)
        defaults = asyncio.run(
            _query(
                dsn,
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'withdrawals' "
                "AND column_name = 'reversed_total'",
                schema,
            )
        )
        assert [r["column_default"] for r in defaults] == ["'0'::numeric"], defaults

        indexes = {
            r["indexname"]: r["indexdef"]
            for r in asyncio.run(
                _query(
                    dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", schema
                )
            )
        }
        defs = list(indexes.values())
        assert any("UNIQUE" in d and "(assessment_id)" in d for d in defs)
        assert any("(user_id, status)" in d and "funded_accounts" in d for d in defs)
        assert any("UNIQUE" in d and "(funded_account_id)" in d and "virtual" in d for d in defs)
        for col in ("funded_account_id", "user_id", "status"):
            assert any(f"withdrawals USING btree ({col})" in d for d in defs), col
        assert any("account_events_pkey" in n for n in indexes)

        fks = asyncio.run(
            _query(
                dsn,
                "SELECT tc.table_name, rc.delete_rule FROM information_schema.table_constraints tc "
                "JOIN information_schema.referential_constraints rc "
                "ON rc.constraint_name = tc.constraint_name "
                "AND rc.constraint_schema = tc.table_schema "
                "WHERE tc.table_schema = $1 AND tc.constraint_type = 'FOREIGN KEY'",
                schema,
            )
        )
        rules = {r["table_name"]: r["delete_rule"] for r in fks}
        assert rules["funded_virtual_accounts"] == "CASCADE"
        assert "withdrawals" in rules

        # One step down removes the day columns and their checks, and keeps the rest
        # (0003 -> 0002); a row written at 0003 keeps its balances.
        downgrade(services.database_url, revision="0002", schema=schema)
        kept = asyncio.run(
            _query(
                dsn,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'funded_virtual_accounts'",
                schema,
            )
        )
        names = {r["column_name"] for r in kept}
        assert not names & set(DAY_COLUMNS), names
        assert {"current_balance", "updated_at", "version"} <= names
        checks = asyncio.run(
            _query(
                dsn,
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE n.nspname = $1 AND c.contype = 'c' AND conname LIKE '%day%'",
                schema,
            )
        )
        assert checks == []
        rows = asyncio.run(
            _query(
                dsn,
                f'SELECT id, current_balance FROM "{schema}".funded_virtual_accounts ORDER BY id',
            )
        )
        assert [(r["id"], str(r["current_balance"])) for r in rows] == [
            ("fva_fa_legacy", "100000.00"),
            ("fva_fa_pack", "98999.99"),
        ]

        # And down again (0002 -> 0001): the withdrawal's reversed_total goes.
        downgrade(services.database_url, revision="0001", schema=schema)
        kept = asyncio.run(
            _query(
                dsn,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = 'withdrawals'",
                schema,
            )
        )
        assert "reversed_total" not in {r["column_name"] for r in kept}
        assert "approved_by" in {r["column_name"] for r in kept}

        downgrade(services.database_url, schema=schema)
        left = asyncio.run(
            _query(
                dsn,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                schema,
            )
        )
        assert {r["table_name"] for r in left} <= {"alembic_version"}
    finally:
        asyncio.run(_query(dsn, f'DROP SCHEMA "{schema}" CASCADE'))


def assert_day_checks(dsn: str, schema: str) -> None:
    """A legacy row leaves the day columns NULL; a rule-pack row sets them together; a row
    with half a day, or a negative counter, is refused. Leaves the two good rows."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            for acct in ("fa_legacy", "fa_pack", "fa_bad"):
                await conn.execute(
                    "INSERT INTO funded_accounts (id, user_id, assessment_id, tier_id, status, "
                    "activated_at) VALUES ($1, 'usr_1', $1, 't', 'active', now())",
                    acct,
                )
            insert = (
                "INSERT INTO funded_virtual_accounts (id, funded_account_id, starting_balance, "
                "current_balance, peak_balance, realized_pnl, unrealized_pnl, total_withdrawals, "
                "updated_at, trading_day, day_resets_at, day_anchor, day_pnl, locked_until, "
                "trading_days, winning_days) VALUES ('fva_' || $1, $1, 100000, $2, 100000, 0, 0, "
                "0, now(), $3, $4, $5, $6, $7, $8, $9)"
            )
            day = date(2026, 11, 22)
            resets = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
            anchor = Decimal("100000.00")
            await conn.execute(insert, "fa_legacy", Decimal("100000.00"), *([None] * 7))
            await conn.execute(
                insert,
                "fa_pack",
                Decimal("98999.99"),
                day,
                resets,
                anchor,
                Decimal("200.00"),
                resets,
                1,
                None,
            )
            for bad in (
                (day, None, None, None, None, None, None),  # half a day
                (None, None, None, None, resets, None, None),  # a lock without a day
                (None, None, None, None, None, None, 0),  # winning days without a day
                (day, resets, anchor, Decimal("0"), None, -1, None),  # a negative counter
                (day, resets, anchor, Decimal("0"), None, 1, -1),
            ):
                with pytest.raises(asyncpg.CheckViolationError):
                    await conn.execute(insert, "fa_bad", Decimal("100000.00"), *bad)
            row = await conn.fetchrow(
                "SELECT trading_day, day_anchor, day_pnl, locked_until, trading_days, "
                "winning_days FROM funded_virtual_accounts WHERE id = 'fva_fa_pack'"
            )
            assert row is not None and dict(row) == {
                "trading_day": day,
                "day_anchor": anchor,
                "day_pnl": Decimal("200.00"),
                "locked_until": resets,
                "trading_days": 1,
                "winning_days": None,
            }
            legacy = await conn.fetchrow(
                "SELECT * FROM funded_virtual_accounts WHERE id = 'fva_fa_legacy'"
            )
            assert legacy is not None
            assert [legacy[c] for c in DAY_COLUMNS] == [None] * len(DAY_COLUMNS)
        finally:
            await conn.close()

    asyncio.run(run())
