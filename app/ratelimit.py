"""Per-user request budget on the POST routes, kept in Redis (fixed one-minute windows).

If Redis cannot be reached the request passes: refusing withdrawals because a rate limiter is
down would be worse than a minute without limits. The event is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Bounds the whole check, retries included: it is part of the owner's answer budget, from which
# the forwarding worker's timeout is derived (views/budget.py).
CALL_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


class RateLimiter:
    def __init__(self, redis_url: str, per_minute: int, prefix: str = "") -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        self._limit = per_minute
        self._prefix = prefix
        self.redis_failures = 0

    async def check(self, user_id: str, now: float | None = None) -> Verdict:
        now = time.time() if now is None else now
        window = int(now // 60)
        key = f"{self._prefix}ratelimit:{user_id}:{window}"
        try:
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await asyncio.wait_for(pipe.execute(), CALL_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            self.redis_failures += 1
            log.warning("rate limit not enforced, Redis unavailable: %s", exc)
            return Verdict(True)
        if int(count) > self._limit:
            return Verdict(False, retry_after=max(1, 60 - int(now % 60)))
        return Verdict(True)

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis
