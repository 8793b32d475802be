"""Sending a command to the account agent and waiting, boundedly, for what it decided.

Only the worker that owns the account sends (see views/routing.py), so the agent that applies
the command runs in this process and resolves the future registered here. Every wait here comes
out of the request's `Deadline` (views/budget.py), which the forwarding worker outlasts.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from app.codec import dumps
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS
from domain.account import Outcome
from views.budget import DECISION_TIMEOUT_SECONDS, Deadline
from views.http import unavailable


class WireCommand(Protocol):
    @property
    def event_id(self) -> str: ...

    @property
    def account_id(self) -> str: ...

    def to_wire(self) -> dict[str, Any]: ...


def _futures(ff: FundedFlow, name: str, key: str) -> tuple[list[Any], asyncio.Future[Any]]:
    table: dict[str, list[asyncio.Future[Any]]] = ff.extras.setdefault(name, {})
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    waiting = table.setdefault(key, [])
    waiting.append(fut)
    return waiting, fut


def _forget(ff: FundedFlow, name: str, key: str, fut: asyncio.Future[Any]) -> None:
    table: dict[str, list[asyncio.Future[Any]]] = ff.extras.get(name, {})
    waiting = table.get(key)
    if waiting is not None:
        if fut in waiting:
            waiting.remove(fut)
        if not waiting:
            table.pop(key, None)


def watch_withdrawal(ff: FundedFlow, withdrawal_id: str) -> asyncio.Future[dict[str, Any]]:
    """A future the account agent resolves with the withdrawal once it is settled."""
    _, fut = _futures(ff, "withdrawal_watchers", withdrawal_id)
    return fut


def unwatch(ff: FundedFlow, withdrawal_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
    """Drop a watcher nobody waits on any more (the request ended before the payout)."""
    _forget(ff, "withdrawal_watchers", withdrawal_id, fut)


async def settled(
    ff: FundedFlow, withdrawal_id: str, fut: asyncio.Future[dict[str, Any]], deadline: Deadline
) -> dict[str, Any] | None:
    """The settled withdrawal, or None when the budget ran out first (the answer then says
    `approved`: the honest state while the transfer is in flight)."""
    try:
        return await asyncio.wait_for(asyncio.shield(fut), deadline.remaining())
    except TimeoutError:
        return None
    finally:
        _forget(ff, "withdrawal_watchers", withdrawal_id, fut)


async def submit(ff: FundedFlow, cmd: WireCommand, deadline: Deadline) -> Outcome:
    """Send the command and wait for the account agent's outcome (503 when it takes too long).

    The send and the decision share at most DECISION_TIMEOUT_SECONDS of the deadline."""
    _, fut = _futures(ff, "waiters", cmd.event_id)
    decision = Deadline(min(deadline.at, Deadline.start(DECISION_TIMEOUT_SECONDS).at))
    try:
        # Handing the message to the producer may itself wait (metadata, a full buffer).
        sent = await asyncio.wait_for(
            ff.topic(ACCOUNT_COMMANDS).send(
                key=cmd.account_id.encode(), value=dumps(cmd.to_wire()), force=True
            ),
            decision.remaining(),
        )
        await asyncio.wait_for(sent, decision.remaining())
        result: Outcome = await asyncio.wait_for(asyncio.shield(fut), decision.remaining())
        return result
    except TimeoutError:
        raise unavailable(
            "the account did not answer in time; the request may still be applied, "
            "repeat it with the same Idempotency-Key to see its outcome"
        ) from None
    finally:
        _forget(ff, "waiters", cmd.event_id, fut)
