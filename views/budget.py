"""How long one request may wait, and how the waits nest.

A worker that forwards a POST to the owner of the account must never give up (503) on a request
the owner is still working on: the owner could go on to apply it, and pay, after the caller was
told "unavailable". So every wait of the owner comes out of one budget, and the forwarder waits
for that whole budget plus a margin. Each wait stays bounded on its own, answering 503 with
Retry-After when it runs out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app import idempotency, ratelimit

# Everything the owner waits for on Kafka and the account agent for one request: the send of the
# command, the agent's decision, and (for an approved withdrawal) the Stripe transfer.
OWNER_WAIT_SECONDS = 20.0
# Of that budget, the send and the decision at most; the rest is for the transfer. A decision
# later than this answers 503 (the request may still be applied: repeat it with the same key).
DECISION_TIMEOUT_SECONDS = 10.0
# The Redis calls of one POST at the owner (rate limit, idempotency look-up, idempotency store),
# each bounded by its own timeout, outside the budget above.
REDIS_CALLS_PER_REQUEST = 3
REDIS_SECONDS = REDIS_CALLS_PER_REQUEST * max(
    idempotency.CALL_TIMEOUT_SECONDS, ratelimit.CALL_TIMEOUT_SECONDS
)
# The most the owner spends on one request before it answers.
OWNER_BUDGET_SECONDS = OWNER_WAIT_SECONDS + REDIS_SECONDS
# Network, reading the request, a busy event loop at either end.
FORWARD_MARGIN_SECONDS = 5.0
FORWARD_TIMEOUT_SECONDS = OWNER_BUDGET_SECONDS + FORWARD_MARGIN_SECONDS

# The webhook's wait for the broker to take its command; Stripe retries a 503.
WEBHOOK_SEND_TIMEOUT_SECONDS = 10.0


@dataclass
class Deadline:
    """The end of the owner's wait budget for one request, on the event loop's clock."""

    at: float

    @classmethod
    def start(cls, seconds: float = OWNER_WAIT_SECONDS) -> Deadline:
        return cls(asyncio.get_running_loop().time() + seconds)

    def remaining(self, cap: float | None = None) -> float:
        left = max(0.0, self.at - asyncio.get_running_loop().time())
        return left if cap is None else min(cap, left)
