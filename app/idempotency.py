"""First answers of POST requests with an Idempotency-Key, kept in Redis for 24 hours.

The key also fixes the withdrawal id (domain/ids.py), so even without Redis a repeat creates
nothing new: the account agent sees the same withdrawal again and answers with it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.codec import dumps

log = logging.getLogger(__name__)

TTL_SECONDS = 24 * 3600
# Each call is bounded on top of the client's socket timeouts (which redis-py may retry): the
# owner's whole answer has a budget that the forwarding worker's timeout is derived from
# (views/budget.py), and a slow Redis must not eat into it unboundedly.
CALL_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class StoredAnswer:
    fingerprint: str
    status: int
    body: dict[str, Any]


def fingerprint(route: str, body: dict[str, Any]) -> str:
    """The same route and body give the same print whatever the order of the body's keys:
    a client that rebuilds its JSON object for a retry is still repeating itself."""
    canonical = json.dumps(
        {"route": route, "body": body},
        default=_canonical_default,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical_default(obj: object) -> str:
    # The decimals of a parsed body (app.codec keeps fractions as Decimal, never float).
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot fingerprint {type(obj).__name__}")


class IdempotencyStore:
    def __init__(self, redis: aioredis.Redis, prefix: str = "") -> None:
        self._redis = redis
        self._prefix = prefix
        self.failures = 0

    def redis_key(self, user_id: str, key: str) -> str:
        """Where the answer to (user, key) is kept."""
        return f"{self._prefix}idem:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"

    async def get(self, user_id: str, key: str) -> StoredAnswer | None:
        try:
            raw = await asyncio.wait_for(
                self._redis.get(self.redis_key(user_id, key)), CALL_TIMEOUT_SECONDS
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            log.warning("idempotency store unavailable: %s", exc)
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        return StoredAnswer(data["fingerprint"], int(data["status"]), data["body"])

    async def put(self, user_id: str, key: str, answer: StoredAnswer) -> None:
        value = dumps(
            {"fingerprint": answer.fingerprint, "status": answer.status, "body": answer.body}
        )
        try:
            # NX: the first answer stays the answer.
            await asyncio.wait_for(
                self._redis.set(self.redis_key(user_id, key), value, ex=TTL_SECONDS, nx=True),
                CALL_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            log.warning("idempotency store unavailable: %s", exc)
