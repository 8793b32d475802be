"""Chaos: two workers and a stream of 20,000 trade events and withdrawal commands, under faults.

The faults come one after the other while the stream is being worked through:

1. a worker killed with SIGKILL every few seconds (the two in turn) and started again;
2. the Kafka broker stopped and started again;
3. PostgreSQL stopped and started again while the sink is writing;
4. Redis stopped: withdrawals asked over HTTP (rate limit and idempotency keys live in Redis)
   still pass, and the stream goes on to its end.

Afterwards (`tests.integration.scripted.verify`): every account's balances and withdrawals equal
a replay of the same inputs through the pure core in this process; every fact is present, by
`event_id`, exactly as the replay made it (a repeat only byte for byte), in order per account;
each withdrawal produced at most one transfer at the recording Stripe double; PostgreSQL holds
every fact once and `fundedflow reconcile` finds no difference with the tables.

The stream is held back between phases (`Publisher.limit`) so that each fault meets a stream in
flight. It runs in CI with the rest of the suite (about three minutes of it).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from app.settings import Settings
from app.tiers_seed import seed_tiers
from app.topics import TRADES
from tests.integration import streams as s
from tests.integration.conftest import Services, pg_dsn
from tests.integration.harness import Kafka, Worker, wait_until
from tests.integration.http_support import Http, auth
from tests.integration.scripted import (
    ChangelogTail,
    Publisher,
    Script,
    activate_all,
    generate,
    killable_env,
    read_outcome,
    verify,
    wait_caught_up,
    write_catalog,
)
from tests.integration.sink_support import reconcile_cli, stack, wait_all_caught_up
from tests.integration.stripe_double import StripeDouble

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ACCOUNTS = 200  # about 100 trade events each
DOOMED = {5, 41, 77, 120, 163, 198}
SEED = 20261201
KILLS = 4
HTTP_ACCOUNTS = 3
STALL_SECONDS = 60


class Chaos:
    """The workers, the stream and a log of what was done to them, with times."""

    def __init__(self, kafka: Kafka, workers: list[Worker], publisher: Publisher) -> None:
        self.kafka = kafka
        self.workers = workers
        self.publisher = publisher
        self.started = time.monotonic()
        self.log: list[str] = []

    def note(self, what: str) -> None:
        p = self.publisher
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {p.published}/{p.total} {what}")

    def release(self, share: float) -> None:
        """Lets `share` more of the stream out."""
        p = self.publisher
        p.limit = min(p.total, p.limit + int(share * p.total))

    async def in_flight(self, seconds: float) -> None:
        """Lets the stream run for a while, failing at once if a worker died by itself."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.kafka.check_workers()
            await asyncio.sleep(0.1)

    async def stack(self, *args: str) -> None:
        await asyncio.to_thread(stack, *args, timeout=180)
        self.note(f"stack.sh {' '.join(args)}")


@pytest.fixture
async def cluster(
    services: Services,
    double: StripeDouble,
    module_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Kafka, list[Worker], dict[str, str]]]:
    prefix = s.uid("chaos") + "."
    tmp = tmp_path_factory.mktemp("chaos")
    env = killable_env(services, prefix, double, module_schema)
    await seed_tiers(Settings.from_env(env), write_catalog(tmp / "tiers.json"))
    workers = [Worker(env, tmp / f"w{i}", tmp / f"worker{i}.log").start() for i in range(2)]
    kafka = Kafka(services, prefix)
    kafka.workers.extend(workers)
    await kafka.start()
    try:
        for w in workers:
            await w.wait_ready()
        yield kafka, workers, env
    finally:
        await kafka.stop()
        for w in workers:
            w.stop()
        # Whatever happened, leave the stack as the other tests expect it.
        await asyncio.to_thread(stack, "up", timeout=180)


async def profit_accounts(kafka: Kafka, tail: ChangelogTail) -> list[tuple[str, str]]:
    """Accounts outside the script, each 10,000.00 up, for the HTTP withdrawals."""
    out = []
    for i in range(HTTP_ACCOUNTS):
        asm, user = s.uid("asm-http"), f"usr_http_{i}"
        acct = s.account_of(asm)
        await kafka.send("assessment.completed", asm, s.assessment(asm, user))
        out.append((acct, user))
    await wait_until(
        lambda: all(a in tail.applied for a, _ in out), timeout=60, what="HTTP accounts"
    )
    await kafka.send_many(
        [(TRADES, a, s.opened(a, "p-1", "1000.00")) for a, _ in out]
        + [(TRADES, a, s.closed(a, "p-1", "10000.00")) for a, _ in out]
    )
    return out


async def test_chaos_kills_broker_database_and_redis(
    cluster: tuple[Kafka, list[Worker], dict[str, str]],
    double: StripeDouble,
    services: Services,
    module_schema: str,
) -> None:
    kafka, workers, env = cluster
    partitions = int(env["TOPIC_PARTITIONS"])
    tail = ChangelogTail(services, f"{kafka.prefix}fundedflow-accounts-changelog", partitions)
    tail_task = asyncio.create_task(tail.run())
    http_answers: list[Any] = []
    try:
        scripts: list[Script] = await activate_all(kafka, tail, ACCOUNTS, "chaos", timeout=120)
        for i, sc in enumerate(scripts):
            generate(sc, i, refusals=True, doomed=DOOMED, seed=SEED)
        http_accounts = await profit_accounts(kafka, tail)
        publisher = Publisher(kafka, tail, scripts)
        publisher.limit = 0
        n_trades = sum(1 for sc in scripts for i in sc.inputs if i.topic == TRADES)
        n_commands = publisher.total - n_trades
        assert n_trades >= 20_000 and n_commands >= 1_000, (n_trades, n_commands)
        chaos = Chaos(kafka, workers, publisher)
        publishing = asyncio.create_task(publisher.run(per_round=2, pause=0.05))
        rng = random.Random(SEED)

        # 1. SIGKILL every few seconds, the two workers in turn, each started again.
        for k in range(KILLS):
            chaos.release(0.1)
            await chaos.in_flight(rng.uniform(2.0, 4.0))
            victim = workers[k % 2]
            victim.kill()
            chaos.note(f"SIGKILL worker {k % 2}")
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            victim.start()
            await victim.wait_ready(timeout=120)
            chaos.note(f"worker {k % 2} ready again")

        # 2. The broker stopped and started again. The stream's producer is held back while it
        # is away (upstream producers are not under test); the workers are not.
        chaos.release(0.15)
        await chaos.in_flight(3.0)
        publisher.limit = publisher.published
        await chaos.stack("down", "kafka")
        await asyncio.sleep(3.0)
        await chaos.stack("up", "kafka")
        chaos.release(0.05)

        # 3. PostgreSQL stopped while the sink is writing, and started again.
        chaos.release(0.1)
        await chaos.in_flight(3.0)
        await chaos.stack("down", "postgres")
        await chaos.in_flight(4.0)
        await chaos.stack("up", "postgres")

        # 4. Redis stopped: withdrawals over HTTP still pass; the stream runs to its end.
        await chaos.stack("down", "redis")
        publisher.limit = publisher.total
        async with Http(workers) as http:
            for i, (acct, user) in enumerate(http_accounts):
                body = {
                    "amount": "150.00",
                    "payment_method": "stripe_connect",
                    "destination": f"acct_http{i}",
                }
                headers = {**auth(user), "Idempotency-Key": f"chaos-{acct}"}
                path = f"/funded-accounts/{acct}/withdraw"
                ans = await http.post(i % 2, path, body, headers)
                for _ in range(5):
                    # A 503 (the account's queue is behind the stream's backlog) may still be
                    # applied: a client repeats it under the same key, as the README says, and
                    # gets its one outcome (Redis is down: the key's command id makes it one).
                    if ans.status != 503:
                        break
                    chaos.note(f"HTTP withdrawal on {acct}: 503, repeated under its key")
                    ans = await http.post(i % 2, path, body, headers)
                http_answers.append(ans)
            chaos.note(f"HTTP withdrawals with Redis down: {[a.status for a in http_answers]}")
            redis_failures = 0
            for i in range(2):
                metrics = await http.get(i, "/metrics", auth("usr_metrics", ["admin"]))
                for line in str(metrics.body).splitlines():
                    if line.startswith("fundedflow_ratelimit_redis_failures_total "):
                        redis_failures += int(float(line.split()[1]))

        while not publishing.done():
            kafka.check_workers()
            if time.monotonic() - publisher.progress_at > STALL_SECONDS:
                publishing.cancel()
                raise AssertionError(
                    f"publishing stalled at {publisher.published}/{publisher.total}: "
                    f"{publisher.stuck()}\n" + "\n".join(chaos.log)
                )
            await asyncio.sleep(0.2)
        await publishing
        chaos.note("stream published")
        await wait_caught_up(kafka, tail, scripts, timeout=180)
        chaos.note("stream applied")
        accounts, fact_records, dlq_records = await read_outcome(kafka)
    finally:
        tail_task.cancel()
        await asyncio.gather(tail_task, return_exceptions=True)

    print("\nchaos timeline:\n" + "\n".join(chaos.log))
    # The stream: states, facts, dead letters and transfers equal the pure replay's.
    verdict = verify(scripts, tail, accounts, fact_records, dlq_records, double, kafka.prefix)
    assert verdict.statuses["completed"] >= 200 and verdict.closed >= len(DOOMED)

    # HTTP with Redis down: answered, paid once, and recorded on the account.
    for (acct, _), ans in zip(http_accounts, http_answers, strict=True):
        assert ans.status == 201, (ans.status, ans.body)
        w = ans.body["withdrawal"]
        assert w["status"] == "completed" and w["stripe_payout_id"], w
        assert double.created_per_withdrawal[w["id"]] == 1
        state = accounts[acct]["state"]
        assert state["total_withdrawals_cents"] == 150_00, state["total_withdrawals_cents"]
        assert [x["status"] for x in state["withdrawals"]] == ["completed"], state["withdrawals"]
    assert redis_failures >= HTTP_ACCOUNTS, redis_failures

    # PostgreSQL: every fact once, and the rows equal the tables.
    await asyncio.to_thread(stack, "up", "redis")
    await wait_all_caught_up(kafka, timeout=120)
    conn = await asyncpg.connect(pg_dsn(services), server_settings={"search_path": module_schema})
    try:
        db_ids = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM account_events")}
    finally:
        await conn.close()
    topic_ids = {json.loads(v)["event_id"] for _, _, v, _ in fact_records if v}
    assert db_ids == topic_ids, (len(db_ids - topic_ids), len(topic_ids - db_ids))
    result = await asyncio.to_thread(reconcile_cli, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    print(
        f"\nchaos: {publisher.total} inputs ({n_trades} trades, {n_commands} commands) on "
        f"{ACCOUNTS} accounts; withdrawals {dict(verdict.statuses)}, {verdict.closed} closed, "
        f"{verdict.transfers} transfers, duplicate facts {dict(verdict.duplicates) or 0}, "
        f"{len(db_ids)} facts in PostgreSQL; reconcile: {result.stdout.strip().splitlines()[-1]}"
    )
