"""The migrations create the schema of CONTRACT.md section 8 and remove it again."""

from __future__ import annotations

import asyncio
import uuid

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

        # One step down removes the column and keeps the rest (0002 -> 0001).
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
