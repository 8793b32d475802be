"""Running real `fundedflow worker` processes and talking to them through Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka_admin import existing_partition_counts
from tests.integration.conftest import Services
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]


def worker_env(services: Services, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka,
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "STRIPE_API_BASE": services.stripe_api_base,
        "STRIPE_API_KEY": "sk_test_123",
        "JWT_SECRET": "test-secret-of-at-least-32-bytes-long",
        "STRIPE_WEBHOOK_SECRET": "whsec_test",
        "TOPIC_PARTITIONS": "4",
        "FUNDEDFLOW_TOPIC_PREFIX": prefix,
    }
    env.update(extra)
    return env


class Worker:
    def __init__(self, env: dict[str, str], data_dir: Path, log: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.log = log
        self.web_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.expected_down = False
        self._log_start = 0

    def start(self) -> Worker:
        self.expected_down = False
        self._log_start = len(self.log.read_text(errors="replace")) if self.log.exists() else 0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "--web-port",
                str(self.web_port),
                "--data-dir",
                str(self.data_dir),
                "--loglevel",
                "info",
            ],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    async def wait_ready(self, timeout: float = 90) -> None:
        """Until the worker has joined its group and recovered its tables."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.tail()}")
            return "Worker ready" in self.log.read_text(errors="replace")[self._log_start :]

        await wait_until(ready, timeout=timeout, what="worker ready")

    def stop(self, timeout: float = 60) -> None:
        self.expected_down = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.expected_down = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


class Kafka:
    """A producer plus readers over the test's topics (all names get the test's prefix)."""

    def __init__(self, services: Services, prefix: str) -> None:
        self.services = services
        self.prefix = prefix
        self.producer: AIOKafkaProducer | None = None
        self.workers: list[Worker] = []

    def check_workers(self) -> None:
        """Fail at once, with the log, when a worker the test relies on has died."""
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is not None and not w.expected_down:
                raise AssertionError(f"worker exited with {w.proc.returncode}:\n{w.tail()}")

    def t(self, base: str) -> str:
        return f"{self.prefix}{base}"

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.services.kafka, acks="all", linger_ms=5
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer:
            await self.producer.stop()

    async def send(self, base: str, key: str, value: Any) -> None:
        assert self.producer
        raw = value if isinstance(value, bytes) else dumps(value)
        await self.producer.send_and_wait(self.t(base), key=key.encode(), value=raw)

    async def send_many(self, items: Iterable[tuple[str, str, Any]]) -> None:
        assert self.producer
        futs = []
        for base, key, value in items:
            raw = value if isinstance(value, bytes) else dumps(value)
            futs.append(await self.producer.send(self.t(base), key=key.encode(), value=raw))
        await self.producer.flush()
        await asyncio.gather(*futs)

    async def read_all(
        self, bases: Iterable[str], raw_topics: Iterable[str] = ()
    ) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
        """Every record in the topics up to their end offsets at the time of the call."""
        topics = [self.t(b) for b in bases] + list(raw_topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.services.kafka, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        out = []
        try:
            # Metadata from the admin client: a subscription would auto-create the topic.
            admin = AIOKafkaAdminClient(bootstrap_servers=self.services.kafka)
            await admin.start()
            try:
                counts = await existing_partition_counts(admin, topics)
            finally:
                await admin.close()
            tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            todo = {tp for tp in tps if end[tp] > 0}
            deadline = time.monotonic() + 30
            while todo and time.monotonic() < deadline:
                batch = await consumer.getmany(*todo, timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        if r.offset < end[tp]:
                            out.append((tp.topic, r.key, r.value, list(r.headers or [])))
                for tp in list(todo):
                    if await consumer.position(tp) >= end[tp]:
                        todo.discard(tp)
        finally:
            await consumer.stop()
        return out

    async def facts(self, *types: str) -> list[dict[str, Any]]:
        records = await self.read_all(types)
        return [json.loads(v) for _, _, v, _ in records if v]

    async def dead_letters(self, base: str) -> list[tuple[bytes | None, str]]:
        records = await self.read_all([f"{base}.dlq"])
        return [(v, dict(h).get("reason", b"").decode()) for _, _, v, h in records]

    async def accounts(self) -> dict[str, dict[str, Any]]:
        """Latest value per account from the accounts table's changelog."""
        changelog = f"{self.prefix}fundedflow-accounts-changelog"
        records = await self.read_all([], raw_topics=[changelog])
        latest: dict[str, dict[str, Any]] = {}
        for _, k, v, _ in records:
            if k is not None and v is not None:
                latest[json.loads(k)] = json.loads(v, parse_float=Decimal)
        return latest


async def wait_until(
    check: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Polls an async or sync check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
