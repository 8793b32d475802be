"""Sending a command to the account agent and waiting, boundedly, for what it decided.

Only the worker that owns the account sends (see views/routing.py), so the agent that applies
the command runs in this process and resolves the future registered here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from app.codec import dumps
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS
from domain.account import Outcome
from views.http import unavailable

DECISION_TIMEOUT_SECONDS = 10.0
PAYOUT_TIMEOUT_SECONDS = 20.0


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


async def settled(
    ff: FundedFlow, withdrawal_id: str, fut: asyncio.Future[dict[str, Any]]
) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(asyncio.shield(fut), PAYOUT_TIMEOUT_SECONDS)
    except TimeoutError:
        return None
    finally:
        _forget(ff, "withdrawal_watchers", withdrawal_id, fut)


async def submit(ff: FundedFlow, cmd: WireCommand) -> Outcome:
    """Send the command and wait for the account agent's outcome (503 when it takes too long)."""
    _, fut = _futures(ff, "waiters", cmd.event_id)
    try:
        sent = await ff.topic(ACCOUNT_COMMANDS).send(
            key=cmd.account_id.encode(), value=dumps(cmd.to_wire()), force=True
        )
        await asyncio.wait_for(sent, DECISION_TIMEOUT_SECONDS)
        result: Outcome = await asyncio.wait_for(asyncio.shield(fut), DECISION_TIMEOUT_SECONDS)
        return result
    except TimeoutError:
        raise unavailable(
            "the account did not answer in time; the request may still be applied, "
            "repeat it with the same Idempotency-Key to see its outcome"
        ) from None
    finally:
        _forget(ff, "waiters", cmd.event_id, fut)
