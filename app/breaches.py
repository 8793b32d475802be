"""An account's breach history: its `rules.violation-detected` facts, read from PostgreSQL.

The sink writes every published fact to `account_events` once, the fact itself as `payload`
(jsonb), so the history is read there and never from the account's value (which must stay
small). Payloads are fetched as JSON text: the HTTP answer passes them on without parsing them
into Python numbers, and `fundedflow explain` parses the one it shows itself.

Order: newest `occurred_at` first, then the larger `event_id` (a fact's id is derived from its
cause, so two breaches caused by one event, or by events at the same instant, still come in one
stable order). The index on (`account_id`, `occurred_at`) serves the query.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.facts import VIOLATION_DETECTED

__all__ = [
    "ACCOUNT_EXISTS_SQL",
    "BREACHES_SQL",
    "MAX_BREACHES",
    "account_known",
    "breach_params",
    "read_breach_payloads",
]

# The most an answer lists (the newest ones). An account closes at its first closing breach and
# a `lock` breach happens at most once a day, so real histories stay far below it; the cap keeps
# the answer bounded whatever the table holds.
MAX_BREACHES = 100

BREACHES_SQL = (
    "SELECT payload::text AS payload FROM account_events "
    "WHERE account_id = :account_id AND type = :type "
    "ORDER BY occurred_at DESC, event_id DESC LIMIT :limit"
)
ACCOUNT_EXISTS_SQL = "SELECT 1 FROM funded_accounts WHERE id = :account_id"


def breach_params(account_id: str, limit: int = MAX_BREACHES) -> dict[str, Any]:
    """The parameters of `BREACHES_SQL` for one account's newest `limit` breaches."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return {"account_id": account_id, "type": VIOLATION_DETECTED, "limit": limit}


async def read_breach_payloads(
    conn: AsyncConnection, account_id: str, limit: int = MAX_BREACHES
) -> list[str]:
    """The JSON text of the account's newest `limit` breaches, newest first."""
    result = await conn.execute(text(BREACHES_SQL), breach_params(account_id, limit))
    return [row.payload for row in result]


async def account_known(conn: AsyncConnection, account_id: str) -> bool:
    """Whether the database has the account's row (the sink wrote it)."""
    result = await conn.execute(text(ACCOUNT_EXISTS_SQL), {"account_id": account_id})
    return result.first() is not None
