"""Every wait of the HTTP layer is bounded, and the waits nest: the forwarder outlasts the owner."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from app import idempotency, ratelimit
from app.idempotency import IdempotencyStore
from app.settings import Settings
from domain.events import ApproveWithdrawal
from views import budget, commands, routing, system
from views.budget import Deadline
from views.http import ApiError

ACCOUNT = "fa_" + "1" * 32
WITHDRAWAL = f"wd_{'1' * 32}_{'2' * 16}"


class _Never:
    """A producer that never takes a message (a broker that does not answer)."""

    async def send(self, **_: Any) -> asyncio.Future[Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _TakesButNeverAcks:
    """The message is handed over, but its delivery is never acknowledged."""

    async def send(self, **_: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()


@dataclass
class _FakeApp:
    pages: dict[str, Any] = field(default_factory=dict)

    def page(self, path: str) -> Callable[[Any], Any]:
        def keep(view: Any) -> Any:
            self.pages[path] = view
            return view

        return keep


@dataclass
class _FakeFF:
    settings: Settings
    producer: Any
    app: _FakeApp = field(default_factory=_FakeApp)
    extras: dict[str, Any] = field(default_factory=dict)

    def topic(self, name: str) -> Any:
        return self.producer


@dataclass
class _FakeCtx:
    ff: _FakeFF


@dataclass
class _FakeRequest:
    body: bytes
    headers: dict[str, str]

    async def read(self) -> bytes:
        return self.body


def _approve() -> ApproveWithdrawal:
    from datetime import UTC, datetime

    return ApproveWithdrawal(
        event_id="approve:x",
        account_id=ACCOUNT,
        withdrawal_id=WITHDRAWAL,
        admin_id="adm",
        at=datetime.now(UTC),
    )


def test_the_forwarder_outlasts_everything_the_owner_may_wait_for() -> None:
    # The owner's worst case: its waits on Kafka and the agent (one budget for send, decision
    # and payout) plus each Redis call at its own bound.
    redis_calls = budget.REDIS_CALLS_PER_REQUEST * max(
        idempotency.CALL_TIMEOUT_SECONDS, ratelimit.CALL_TIMEOUT_SECONDS
    )
    owner_worst = budget.OWNER_WAIT_SECONDS + redis_calls
    assert budget.DECISION_TIMEOUT_SECONDS < budget.OWNER_WAIT_SECONDS
    assert budget.OWNER_BUDGET_SECONDS >= owner_worst
    assert routing.FORWARD_TIMEOUT_SECONDS > budget.OWNER_BUDGET_SECONDS
    assert routing.FORWARD_TIMEOUT_SECONDS - owner_worst >= 2.0  # a real margin


async def test_submit_answers_503_when_the_broker_never_takes_the_command() -> None:
    ff = _FakeFF(Settings.from_env({}), _Never())
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError) as err:
        await asyncio.wait_for(commands.submit(ff, _approve(), Deadline.start(0.1)), 5)  # type: ignore[arg-type]
    assert err.value.status == 503 and err.value.headers["Retry-After"]
    assert asyncio.get_running_loop().time() - started < 1
    assert ff.extras["waiters"] == {}  # nothing left behind


async def test_submit_shares_one_deadline_between_send_and_decision() -> None:
    ff = _FakeFF(Settings.from_env({}), _TakesButNeverAcks())
    started = asyncio.get_running_loop().time()
    with pytest.raises(ApiError):
        await commands.submit(ff, _approve(), Deadline.start(0.2))  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started < 1


async def test_the_payout_wait_uses_what_is_left_of_the_deadline() -> None:
    ff = _FakeFF(Settings.from_env({}), _Never())
    watcher = commands.watch_withdrawal(ff, WITHDRAWAL)  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    assert await commands.settled(ff, WITHDRAWAL, watcher, Deadline.start(0.1)) is None  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started < 1
    assert ff.extras["withdrawal_watchers"] == {}


def _signature(payload: str, secret: str) -> str:
    ts = int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def _webhook(ff: _FakeFF) -> Callable[[_FakeRequest], Awaitable[web.Response]]:
    system.register(_FakeCtx(ff))  # type: ignore[arg-type]
    view = ff.app.pages["/webhooks/stripe"]
    return lambda request: view.post(None, request)  # type: ignore[no-any-return]


async def test_webhook_answers_503_without_a_webhook_secret() -> None:
    post = _webhook(_FakeFF(Settings.from_env({}), _Never()))
    resp = await post(_FakeRequest(b"{}", {"Stripe-Signature": "t=1,v1=00"}))
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"]["code"] == "webhooks_disabled"


async def test_webhook_answers_503_when_the_broker_does_not_take_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(system, "WEBHOOK_SEND_TIMEOUT_SECONDS", 0.1)
    ff = _FakeFF(Settings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_unit"}), _TakesButNeverAcks())
    post = _webhook(ff)
    event = {
        "id": "evt_unit",
        "object": "event",
        "type": "transfer.reversed",
        "data": {
            "object": {
                "id": "tr_1",
                "amount": 50000,
                "amount_reversed": 50000,
                "reversed": True,
                "metadata": {"withdrawal_id": WITHDRAWAL},
            }
        },
        "created": 1764000000,
    }
    payload = json.dumps(event)
    request = _FakeRequest(
        payload.encode(), {"Stripe-Signature": _signature(payload, "whsec_unit")}
    )
    resp = await asyncio.wait_for(post(request), 5)
    assert resp.status == 503 and resp.headers["Retry-After"]
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"]["code"] == "unavailable"


class _HangingRedis:
    async def get(self, key: str) -> bytes | None:
        await asyncio.Event().wait()
        return None

    async def set(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()


async def test_idempotency_store_calls_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "CALL_TIMEOUT_SECONDS", 0.05)
    store = IdempotencyStore(_HangingRedis())  # type: ignore[arg-type]
    assert await asyncio.wait_for(store.get("u1", "k"), 2) is None
    await asyncio.wait_for(store.put("u1", "k", idempotency.StoredAnswer("f", 201, {})), 2)
    assert store.failures == 2
