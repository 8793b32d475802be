"""`fundedflow explain` against the real PostgreSQL: the latest breach of an account, its
evidence hash recomputed from what the database holds (a row edited there is a mismatch)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from domain.rulepacks import evidence_digest
from tests.integration.breach_support import (
    explain_cli,
    insert_facts,
    sealed_evidence,
    violation,
)
from tests.integration.conftest import Services, pg_dsn

pytestmark = pytest.mark.integration

ACCOUNT = "fa_" + "1" * 32
OTHER_ACCOUNT = "fa_" + "2" * 32


def cli_env(services: Services, schema: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "FUNDEDFLOW_DB_SCHEMA": schema,
    }


async def add_account(services: Services, schema: str, account_id: str) -> None:
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": schema})
    try:
        await conn.execute(
            "INSERT INTO funded_accounts (id, user_id, assessment_id, tier_id, status, "
            "activated_at) VALUES ($1, 'usr_1', $2, 'funded-100k', 'closed', now())",
            account_id,
            f"asm-{account_id}",
        )
    finally:
        await conn.close()


async def test_the_latest_breach_is_explained_and_its_hash_holds(
    services: Services, db_schema: str
) -> None:
    evidence = sealed_evidence("t-latest", ACCOUNT)
    facts = [
        violation(
            ACCOUNT,
            "usr_1",
            datetime(2026, 11, 24, 9, 15, tzinfo=UTC),
            "b-latest",
            evidence=evidence,
        ),
        # Older: not the one shown.
        violation(ACCOUNT, "usr_1", datetime(2026, 11, 20, tzinfo=UTC), "b-older"),
        # Later, but not a breach, or not this account's.
        violation(
            ACCOUNT,
            "usr_1",
            datetime(2026, 12, 1, tzinfo=UTC),
            "s-later",
            fact_type="rules.status-changed",
        ),
        violation(OTHER_ACCOUNT, "usr_2", datetime(2026, 12, 1, tzinfo=UTC), "b-other"),
    ]
    await insert_facts(pg_dsn(services), db_schema, facts)
    run = explain_cli(cli_env(services, db_schema), ACCOUNT)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert out.splitlines()[0] == f"breach of account {ACCOUNT} (user usr_1)"
    for expected in (
        "b-latest",
        "t-b-latest",
        "2026-11-24T09:15:00Z",
        "daily_loss",
        "t-latest position_closed at 2026-11-24T09:15:00Z",
        "equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00",
        "action=close, anchor=balance, limit=0.0500",
    ):
        assert expected in out, expected
    assert ["equity", "100000.00", "94900.00"] in [line.split() for line in out.splitlines()]
    assert out.splitlines()[-1] == f"evidence hash OK (sha256 {evidence['sha256']})"


async def test_evidence_edited_in_the_database_is_a_mismatch(
    services: Services, db_schema: str
) -> None:
    evidence = sealed_evidence("t-1", ACCOUNT)
    fact = violation(ACCOUNT, "usr_1", datetime(2026, 11, 24, tzinfo=UTC), "b-1", evidence=evidence)
    await insert_facts(pg_dsn(services), db_schema, [fact])
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": db_schema})
    try:
        # Someone makes the loss look smaller, leaving the stored hash as it was.
        await conn.execute(
            "UPDATE account_events SET payload = jsonb_set(payload, "
            "'{evidence,after,equity}', '\"95900.00\"') WHERE event_id = 'b-1'"
        )
    finally:
        await conn.close()
    tampered: dict[str, Any] = {
        **evidence,
        "after": {**evidence["after"], "equity": "95900.00"},
    }
    run = explain_cli(cli_env(services, db_schema), ACCOUNT)
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == (
        f"evidence hash MISMATCH: stored {evidence['sha256']}, computed {evidence_digest(tampered)}"
    )
    assert ["equity", "100000.00", "95900.00"] in [line.split() for line in run.stdout.splitlines()]


async def test_a_fact_without_evidence_says_so(services: Services, db_schema: str) -> None:
    fact = violation(ACCOUNT, "usr_1", datetime(2026, 11, 24, tzinfo=UTC), "b-plain")
    await insert_facts(pg_dsn(services), db_schema, [fact])
    run = explain_cli(cli_env(services, db_schema), ACCOUNT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no evidence: this fact was published before breaches carried evidence" in run.stdout
    assert "hash" not in run.stdout


async def test_no_breach_is_exit_1_and_says_whether_the_account_exists(
    services: Services, db_schema: str
) -> None:
    await add_account(services, db_schema, ACCOUNT)
    known = explain_cli(cli_env(services, db_schema), ACCOUNT)
    assert known.returncode == 1
    assert known.stderr.strip() == f"account {ACCOUNT} has no breach on record"
    assert known.stdout == ""
    unknown = explain_cli(cli_env(services, db_schema), OTHER_ACCOUNT)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"no account {OTHER_ACCOUNT} in the database (and no breach on record)"
    )


def test_a_database_that_cannot_be_read_is_exit_2_without_a_traceback(
    services: Services,
) -> None:
    # Port 1 on loopback: nothing listens.
    env = {**os.environ, "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/fundedflow"}
    env.pop("FUNDEDFLOW_DB_SCHEMA", None)
    run = explain_cli(env, ACCOUNT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith("fundedflow explain: ")
    assert "Traceback" not in run.stderr
    # A schema without the tables (never migrated) is the same kind of answer.
    missing = explain_cli(
        {
            **os.environ,
            "DATABASE_URL": services.database_url,
            "FUNDEDFLOW_DB_SCHEMA": "no_such_schema_here",
        },
        ACCOUNT,
    )
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "Traceback" not in missing.stderr
