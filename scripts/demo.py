"""A guided scenario through a running FundedFlow: assessment → trades → withdrawals → breach.

Run by `scripts/run.sh` once the workers answer. It talks to the system only the way its users
do: events published to Kafka by "upstream services", and HTTP calls of a trader and an admin.
Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, JWT_SECRET, FUNDEDFLOW_TOPIC_PREFIX)
and the worker URLs from DEMO_WORKERS (comma-separated, default http://127.0.0.1:6066).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
from aiokafka import AIOKafkaProducer

PREFIX = os.environ.get("FUNDEDFLOW_TOPIC_PREFIX", "")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
SECRET = os.environ.get("JWT_SECRET", "")
WORKERS = os.environ.get("DEMO_WORKERS", "http://127.0.0.1:6066").split(",")
# The trader (scripts/run.sh prints a token for them, to watch /app/ during the demo) and the
# pause after each step, so a person watching the page sees each change land.
USER = os.environ.get("DEMO_USER", "")
PACE = float(os.environ.get("DEMO_PACE", "0"))


def step(n: int, text: str) -> None:
    if n > 1:
        beat()
    print(f"\n== {n}. {text}", flush=True)


def beat() -> None:
    """The pause a person watching the page needs to see one change before the next."""
    if PACE > 0:
        time.sleep(PACE)


def show(label: str, value: Any) -> None:
    print(f"   {label}: {value}", flush=True)


def token(sub: str, roles: list[str]) -> dict[str, str]:
    claims = {"sub": sub, "roles": roles, "exp": int(time.time()) + 3600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Demo:
    def __init__(self) -> None:
        self.user = USER or f"usr_demo_{uuid.uuid4().hex[:6]}"
        self.trader = token(self.user, [])
        self.admin = token("adm_demo", ["admin"])
        self._session: aiohttp.ClientSession | None = None
        self._producer: AIOKafkaProducer | None = None
        self.seq = 0

    def worker(self, i: int) -> str:
        return WORKERS[i % len(WORKERS)]

    async def call(
        self, i: int, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.worker(i) + path, headers=headers, json=body
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def publish(self, topic: str, key: str, value: dict[str, Any]) -> None:
        await self.producer.send_and_wait(
            PREFIX + topic, key=key.encode(), value=json.dumps(value).encode()
        )

    async def trade(
        self, acct: str, kind: str, position: str, at: str | None = None, **fields: str
    ) -> None:
        self.seq += 1
        event = {
            "event_id": f"demo-{acct[-6:]}-{self.seq}",
            "type": kind,
            "account_id": acct,
            "position_id": position,
            "occurred_at": at or now(),
            **fields,
        }
        await self.publish("trades", acct, event)

    async def account(
        self, acct: str, worker: int = 0, until: Any = None, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.call(worker, "GET", f"/funded-accounts/{acct}", self.trader)
            if status == 200 and (until is None or until(body)):
                return dict(body)
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"demo: account {acct} did not reach the expected state "
                    f"(last answer {status}: {body})"
                )
            await asyncio.sleep(0.3)

    def balances(self, a: dict[str, Any]) -> None:
        show(
            "balance",
            f"current {a['current_balance']}, peak {a['peak_balance']}, "
            f"realized {a['realized_pnl']}, unrealized {a['unrealized_pnl']}",
        )
        show("withdrawable", a["withdrawable_amount"])
        rules = a.get("rules", {})
        for name, r in rules.items():
            floor = f", floor {r['floor']}" if r.get("floor") else ""
            show(
                f"rule {name}",
                f"{r['value']} of {r['threshold']} → {r['status']} ({r['remaining']} left{floor})",
            )

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None
        return self._producer

    async def run(self) -> None:
        self._session = aiohttp.ClientSession()
        self._producer = AIOKafkaProducer(bootstrap_servers=KAFKA.split(","), acks="all")
        await self.producer.start()
        try:
            await self.scenario()
        finally:
            await self.producer.stop()
            await self.session.close()

    async def scenario(self) -> None:
        asm = f"asm_demo_{uuid.uuid4().hex[:8]}"
        step(1, f"The assessment service publishes: {self.user} passed {asm} (tier funded-100k)")
        await self.publish(
            "assessment.completed",
            asm,
            {
                "event_id": f"e-{asm}",
                "assessment_id": asm,
                "user_id": self.user,
                "tier_id": "funded-100k",
                "status": "passed",
                "completed_at": now(),
            },
        )
        status: int = 0
        body: Any = {}
        for _ in range(200):
            status, body = await self.call(0, "GET", "/funded-accounts", self.trader)
            if status == 200 and body["funded_accounts"]:
                break
            await asyncio.sleep(0.3)
        if not body.get("funded_accounts"):
            raise SystemExit(f"demo: no funded account appeared ({status}: {body})")
        acct = body["funded_accounts"][0]["id"]
        show("funded account", f"{acct} ({body['funded_accounts'][0]['status']})")

        step(2, "The trading engine streams trades: two positions, one closed at a profit")
        await self.trade(
            acct,
            "position_opened",
            "p-1",
            symbol="EURUSD",
            side="long",
            quantity="2.5",
            price="1.0850",
            notional="4000.00",
        )
        await self.trade(acct, "position_updated", "p-1", unrealized_pnl="3200.00")
        await self.trade(acct, "position_closed", "p-1", realized_pnl="6250.00")
        a = await self.account(acct, until=lambda a: a["realized_pnl"] == "6250.00")
        self.balances(a)

        step(3, "The trader withdraws 250.00 (under 1,000.00: approved and paid at once)")
        status, body = await self.call(
            1,
            "POST",
            f"/funded-accounts/{acct}/withdraw",
            self.trader,
            {
                "amount": "250.00",
                "payment_method": "stripe_connect",
                "destination": "acct_1DemoTrader",
            },
        )
        w = body.get("withdrawal", body)
        show(f"HTTP {status}", f"{w.get('status')} — Stripe transfer {w.get('stripe_payout_id')}")

        step(4, "The trader asks for 2,000.00: it waits for an admin")
        status, body = await self.call(
            0,
            "POST",
            f"/funded-accounts/{acct}/withdraw",
            self.trader,
            {
                "amount": "2000.00",
                "payment_method": "stripe_connect",
                "destination": "acct_1DemoTrader",
            },
        )
        large = body["withdrawal"]
        show(f"HTTP {status}", f"{large['status']} (requires review: {large['requires_review']})")
        for _ in range(100):
            _, pending = await self.call(1, "GET", "/admin/withdrawals/pending", self.admin)
            if any(x["id"] == large["id"] for x in pending["withdrawals"]):
                break
            await asyncio.sleep(0.3)
        show("admin queue", f"{len(pending['withdrawals'])} pending, oldest first")

        step(5, "The admin approves it: re-checked against the account, then paid")
        status, body = await self.call(
            1, "POST", f"/admin/withdrawals/{large['id']}/approve", self.admin
        )
        w = body.get("withdrawal", body)
        show(f"HTTP {status}", f"{w.get('status')} — Stripe transfer {w.get('stripe_payout_id')}")

        step(6, "The account over HTTP (asked on the other worker: same answer)")
        a = await self.account(acct, worker=1)
        self.balances(a)
        show("paid out", a["total_withdrawals"])

        step(7, "A losing trade breaches the 10 % drawdown: the account closes at once")
        await self.trade(
            acct,
            "position_opened",
            "p-2",
            symbol="GBPUSD",
            side="short",
            quantity="1",
            price="1.2700",
            notional="3000.00",
        )
        await self.trade(acct, "position_updated", "p-2", unrealized_pnl="-9000.00")
        a = await self.account(acct, until=lambda a: a["rules"]["drawdown"]["status"] != "safe")
        self.balances(a)
        beat()  # the warning stays on the page for a moment before the breach
        await self.trade(acct, "position_updated", "p-2", unrealized_pnl="-11000.00")
        a = await self.account(acct, until=lambda a: a["status"] == "closed")
        self.balances(a)
        show("status", f"{a['status']} — {a['closure_reason']} at {a['closed_at']}")
        status, body = await self.call(
            0,
            "POST",
            f"/funded-accounts/{acct}/withdraw",
            self.trader,
            {
                "amount": "100.00",
                "payment_method": "stripe_connect",
                "destination": "acct_1DemoTrader",
            },
        )
        show(f"a new withdrawal: HTTP {status}", body["error"]["code"])
        await self.soft_lock()
        print(
            "\nDemo complete: one account was activated, traded, paid twice and closed on a "
            "drawdown breach; another was locked for the day by a soft daily loss and unlocked "
            "at the next reset.",
            flush=True,
        )

    async def soft_lock(self) -> None:
        """A rule-pack tier: a daily loss that locks new positions until 17:00 Chicago."""
        tier = "funded-50k-eod-trailing-soft-daily-chicago"
        asm = f"asm_demo_{uuid.uuid4().hex[:8]}"
        step(8, f"{self.user} passes {asm} on tier {tier}")
        await self.publish(
            "assessment.completed",
            asm,
            {
                "event_id": f"e-{asm}",
                "assessment_id": asm,
                "user_id": self.user,
                "tier_id": tier,
                "status": "passed",
                "completed_at": now(),
            },
        )
        status: int = 0
        body: Any = {}
        mine: list[dict[str, Any]] = []
        for _ in range(200):
            status, body = await self.call(0, "GET", "/funded-accounts", self.trader)
            mine = [x for x in body.get("funded_accounts", []) if x["tier_id"] == tier]
            if mine:
                break
            await asyncio.sleep(0.3)
        else:
            raise SystemExit(f"demo: the rule-pack account did not appear ({status}: {body})")
        acct = mine[0]["id"]
        a = await self.account(acct)
        day = a["trading_day"]
        show("trading day", f"{day['day']}, resets at {day['resets_at']} (17:00 Chicago)")
        self.balances(a)

        step(9, "A position loses 1,000.01 in the day: the soft daily loss locks the account")
        await self.trade(
            acct,
            "position_opened",
            "p-1",
            symbol="ES",
            side="long",
            quantity="1",
            price="6000",
            notional="2000.00",
        )
        await self.trade(acct, "position_updated", "p-1", unrealized_pnl="-1000.01")
        a = await self.account(acct, until=lambda a: a["trading_day"]["locked_until"] is not None)
        self.balances(a)
        until = a["trading_day"]["locked_until"]
        show("status", f"{a['status']}, locked until {until}")
        await self.trade(
            acct,
            "position_opened",
            "p-2",
            symbol="NQ",
            side="long",
            quantity="1",
            price="21000",
            notional="2000.00",
        )
        await asyncio.sleep(1)
        a = await self.account(acct)
        show("a new position during the lock", f"refused ({len(a['positions'])} open position)")
        for _ in range(100):
            _, body = await self.call(1, "GET", f"/funded-accounts/{acct}/breaches", self.trader)
            if body.get("breaches"):
                break
            await asyncio.sleep(0.3)
        breach = body["breaches"][0]
        show("breach", f"{breach['rule']} ({breach['action']}): {breach['evidence']['formula']}")
        show("evidence sha256", breach["evidence"]["sha256"])

        step(10, "The first tick at the next reset (17:00 Chicago) ends the lock")
        await self.trade(acct, "position_updated", "p-1", at=until, unrealized_pnl="-900.00")
        a = await self.account(acct, until=lambda a: a["trading_day"]["locked_until"] is None)
        day = a["trading_day"]
        show("trading day", f"{day['day']}, anchor {day['day_anchor']}, unlocked")
        self.balances(a)
        _, gates = await self.call(
            0, "GET", f"/funded-accounts/{acct}/payout-eligibility", self.trader
        )
        failing = [g["gate"] for g in gates["gates"] if not g["passed"]]
        show("payout eligibility", f"eligible {gates['eligible']}; not yet: {', '.join(failing)}")


def main() -> int:
    if not SECRET:
        print("demo: JWT_SECRET must be set (the workers' HS256 key)", file=sys.stderr)
        return 2
    asyncio.run(Demo().run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
