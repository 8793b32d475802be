"""Breach facts written straight into `account_events` (as the sink writes them), and
`fundedflow explain` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from domain.rulepacks import evidence_state, make_evidence
from tests.integration.harness import REPO

VIOLATION = "rules.violation-detected"


def sealed_evidence(trigger_event_id: str, account_id: str) -> dict[str, Any]:
    """Evidence as the publisher seals it, for a daily-loss breach of 5,000.00 on 100,000.00."""
    day = date(2026, 11, 24)
    return make_evidence(
        trigger={
            "event_id": trigger_event_id,
            "type": "position_closed",
            "account_id": account_id,
            "position_id": "p-1",
            "realized_pnl": "-5100.00",
            "occurred_at": "2026-11-24T09:15:00Z",
        },
        before=evidence_state(
            equity_cents=10_000_000,
            balance_cents=10_000_000,
            peak_balance_cents=10_000_000,
            day=day,
            day_anchor_cents=10_000_000,
            floor_cents=9_500_000,
        ),
        after=evidence_state(
            equity_cents=9_490_000,
            balance_cents=9_490_000,
            peak_balance_cents=10_000_000,
            day=day,
            day_anchor_cents=10_000_000,
            floor_cents=9_500_000,
        ),
        terms={"limit": "0.0500", "anchor": "balance", "action": "close"},
        formula="equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00",
    )


def violation(
    account_id: str,
    user_id: str,
    occurred_at: datetime,
    event_id: str,
    *,
    evidence: Mapping[str, Any] | None = None,
    fact_type: str = VIOLATION,
) -> dict[str, Any]:
    fact: dict[str, Any] = {
        "event_id": event_id,
        "type": fact_type,
        "occurred_at": occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "account_id": account_id,
        "user_id": user_id,
        "rule": "daily_loss",
        "value": "0.0510",
        "threshold": "0.0500",
        "trigger_event_id": f"t-{event_id}",
    }
    if evidence is not None:
        fact["action"] = "close"
        fact["evidence"] = dict(evidence)
    return fact


async def insert_facts(dsn: str, schema: str, facts: Iterable[Mapping[str, Any]]) -> None:
    """Rows of `account_events` as the sink writes them: the fact itself as jsonb."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.executemany(
            "INSERT INTO account_events (event_id, type, account_id, occurred_at, payload) "
            "VALUES ($1, $2, $3, $4, $5::jsonb)",
            [
                (
                    f["event_id"],
                    f["type"],
                    f["account_id"],
                    datetime.fromisoformat(f["occurred_at"].replace("Z", "+00:00")),
                    json.dumps(f),
                )
                for f in facts
            ],
        )
    finally:
        await conn.close()


def explain_cli(env: Mapping[str, str], account_id: str) -> subprocess.CompletedProcess[str]:
    """`fundedflow explain ACCOUNT_ID` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "explain", account_id],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
