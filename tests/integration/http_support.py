"""Two real workers behind HTTP, tokens, and a small client for the end-to-end tests."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import redis.asyncio as aioredis

from app.idempotency import IdempotencyStore
from tests.integration.harness import Worker, wait_until

SECRET = "test-secret-of-at-least-32-bytes-long"
WEBHOOK_SECRET = "whsec_test"


def token(sub: str, roles: list[str] | None = None, ttl: int = 3600, key: str = SECRET) -> str:
    claims: dict[str, Any] = {"sub": sub, "roles": roles or [], "exp": int(time.time()) + ttl}
    return jwt.encode(claims, key, algorithm="HS256")


def auth(sub: str, roles: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, roles)}"}


ADMIN = auth("adm_1", ["admin"])


def stripe_signature(payload: str, secret: str = WEBHOOK_SECRET) -> str:
    ts = int(time.time())
    mac = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Http:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session
        await self.session.close()

    def url(self, worker: int, path: str) -> str:
        return f"http://127.0.0.1:{self.workers[worker].web_port}{path}"

    async def call(
        self,
        worker: int,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
    ) -> Answer:
        assert self.session
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "application/json"}
        elif data is not None:
            kwargs["data"] = data
        async with self.session.request(method, self.url(worker, path), **kwargs) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return Answer(resp.status, body, dict(resp.headers))

    async def get(self, worker: int, path: str, headers: dict[str, str] | None = None) -> Answer:
        return await self.call(worker, "GET", path, headers)

    async def post(
        self, worker: int, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> Answer:
        return await self.call(worker, "POST", path, headers, json_body=body)

    async def wait_healthy(self, timeout: float = 120) -> None:
        async def all_ok() -> bool:
            for i, w in enumerate(self.workers):
                if w.proc is not None and w.proc.poll() is not None:
                    raise AssertionError(f"worker {i} exited:\n{w.tail()}")
                try:
                    if (await self.get(i, "/health")).status != 200:
                        return False
                except aiohttp.ClientError:
                    return False
            return True

        await wait_until(all_ok, timeout=timeout, interval=0.5, what="workers healthy")

    async def account_when(
        self, worker: int, account_id: str, headers: dict[str, str], check: Any, timeout: float = 60
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            ans = await self.get(worker, f"/funded-accounts/{account_id}", headers)
            if ans.status == 200 and check(ans.body):
                return dict(ans.body)
            return None

        return await wait_until(probe, timeout=timeout, what=f"account {account_id}")


async def settle(seconds: float = 1.0) -> None:
    await asyncio.sleep(seconds)


async def forget_answer(redis_url: str, prefix: str, user_id: str, key: str) -> None:
    """Drop the stored answer to (user, key), as a Redis restart without persistence would."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        store = IdempotencyStore(client, prefix=prefix)
        assert await client.delete(store.redis_key(user_id, key)) == 1
    finally:
        await client.aclose()
