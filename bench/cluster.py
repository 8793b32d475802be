"""The system under test: real `fundedflow worker` processes on the local stack.

Every run gets its own topic prefix, PostgreSQL schema and data directories, so it never
touches another run's (or a test's) state; `Cluster.close` drops the schema and deletes the
run's topics.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from app.db import migrate
from app.settings import Settings
from app.sink_db import asyncpg_dsn
from app.tiers_seed import seed_tiers

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-secret-of-at-least-32-bytes-long"
FORWARDED_HEADER = "X-FundedFlow-Forwarded"  # views/routing.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(sub: str, roles: list[str] | None = None, ttl: int = 6 * 3600) -> str:
    claims: dict[str, Any] = {"sub": sub, "roles": roles or [], "exp": int(time.time()) + ttl}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def bearer(sub: str, roles: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, roles)}"}


ADMIN = bearer("adm_bench", ["admin"])


def _answers(url: str) -> bool:
    from urllib.parse import urlparse

    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=2):
            return True
    except OSError:
        return False


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def dir_bytes(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


class Worker:
    """One `python -m app.cli worker` subprocess with its own port, data dir and log."""

    def __init__(self, name: str, env: dict[str, str], root: Path) -> None:
        self.name = name
        self.env = env
        self.data_dir = root / name
        self.log = root / f"{name}.log"
        self.web_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Worker:
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
            # FF_BENCH_WORKER_REPO: run the workers from another checkout (a prototype change)
            # while the benchmark itself stays the same.
            cwd=os.environ.get("FF_BENCH_WORKER_REPO") or REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM and wait; returns the seconds the worker took to exit."""
        t0 = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the worker keeps its group membership (the session timeout is 60 s)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"worker {self.name} exited ({self.proc.returncode}):\n{self.tail()}"
            )


@dataclass
class Cluster:
    """Settings, workers and clients of one benchmark run."""

    kafka: str
    database_url: str
    redis_url: str
    stripe_api_base: str
    partitions: int
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:10]}.")
    schema: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:12]}")
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ffbench-")))
    workers: list[Worker] = field(default_factory=list)
    producer: AIOKafkaProducer | None = None
    session: aiohttp.ClientSession | None = None
    stripe_double: Any = None

    @classmethod
    def from_env(cls, partitions: int) -> Cluster:
        env = os.environ
        return cls(
            kafka=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            database_url=env.get(
                "DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/fundedflow"
            ),
            redis_url=env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            stripe_api_base=env.get("STRIPE_API_BASE", "http://127.0.0.1:12111"),
            partitions=partitions,
        )

    # -- environment ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "STRIPE_API_BASE": self.stripe_api_base,
            "STRIPE_API_KEY": "sk_test_123",
            "JWT_SECRET": JWT_SECRET,
            "TOPIC_PARTITIONS": str(self.partitions),
            "FUNDEDFLOW_TOPIC_PREFIX": self.prefix,
            "FUNDEDFLOW_DB_SCHEMA": self.schema,
            "WEB_HOST": "127.0.0.1",
            # The POST benchmark sends more than a trader would in a minute.
            "RATE_LIMIT_PER_MINUTE": "1000000",
        }

    def t(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def dsn(self) -> str:
        return asyncpg_dsn(self.database_url)

    async def setup(self) -> None:
        if not _answers(f"kafka://{self.kafka.split(',')[0]}"):
            raise SystemExit(
                f"bench: Kafka does not answer at {self.kafka}: start the stack with "
                '`scripts/stack.sh up` and `eval "$(scripts/stack.sh env)"`'
            )
        if not _answers(self.stripe_api_base):
            # stripe-mock is not running: a recording double on loopback takes its place.
            from tests.integration.stripe_double import StripeDouble

            self.stripe_double = StripeDouble()
            self.stripe_api_base = self.stripe_double.start()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
        finally:
            await conn.close()
        await asyncio.to_thread(migrate, self.database_url, "head", self.schema)
        await seed_tiers(Settings.from_env(self.env()))
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.split(","),
            acks="all",
            linger_ms=20,
            max_batch_size=256 * 1024,
        )
        await self.producer.start()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0)
        )

    async def close(self, keep: bool = False, logs_to: Path | None = None) -> None:
        for w in self.workers:
            w.stop(timeout=30)
        if logs_to is not None:
            logs_to.mkdir(parents=True, exist_ok=True)
            for w in self.workers:
                if w.log.exists():
                    shutil.copy(w.log, logs_to / w.log.name)
        if self.producer is not None:
            await self.producer.stop()
        if self.session is not None:
            await self.session.close()
        if self.stripe_double is not None:
            self.stripe_double.stop()
        if keep:
            return
        try:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            finally:
                await conn.close()
        except Exception as exc:
            print(f"bench: could not drop schema {self.schema}: {exc}", file=sys.stderr)
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka.split(","))
            await admin.start()
            try:
                mine = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
                if mine:
                    await admin.delete_topics(mine)
            finally:
                await admin.close()
        except Exception as exc:
            print(f"bench: could not delete topics {self.prefix}*: {exc}", file=sys.stderr)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- workers -------------------------------------------------------------------------------

    def add_worker(self) -> Worker:
        w = Worker(f"w{len(self.workers) + 1}", self.env(), self.root)
        self.workers.append(w)
        return w

    def running(self) -> list[Worker]:
        return [w for w in self.workers if w.running]

    async def get(
        self, w: Worker, path: str, headers: dict[str, str] | None = None, timeout: float = 10
    ) -> tuple[int, bytes]:
        assert self.session is not None
        async with self.session.get(
            w.url + path, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            return resp.status, await resp.read()

    async def healthy(self, w: Worker) -> bool:
        w.check()
        try:
            status, _ = await self.get(w, "/health", timeout=2)
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    async def wait_healthy(self, workers: list[Worker], timeout: float = 180) -> float:
        """Seconds until every worker answers /health with 200."""
        t0 = time.monotonic()
        while True:
            oks = await asyncio.gather(*(self.healthy(w) for w in workers))
            if all(oks):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(
                    "workers not healthy in time:\n" + "\n".join(w.tail(1500) for w in workers)
                )
            await asyncio.sleep(0.1)

    async def metrics(self, w: Worker) -> dict[str, float] | None:
        try:
            status, body = await self.get(w, "/metrics", ADMIN, timeout=5)
        except (aiohttp.ClientError, TimeoutError):
            return None
        if status != 200:
            return None
        return parse_metrics(body.decode())

    async def processed(self, workers: list[Worker]) -> int | None:
        """Sum of `fundedflow_events_processed_total` (None if a worker does not answer)."""
        values = await asyncio.gather(*(self.metrics(w) for w in workers))
        if any(v is None for v in values):
            return None
        return int(sum(v.get("fundedflow_events_processed_total", 0) for v in values if v))

    async def owner_of(self, account_id: str, user: str) -> Worker | None:
        """The running worker that owns the account: the only one that serves a request
        marked as already forwarded (the others answer 503)."""
        for w in self.running():
            status, _ = await self.get(
                w, f"/funded-accounts/{account_id}", {**bearer(user), FORWARDED_HEADER: "1"}
            )
            if status == 200:
                return w
        return None

    # -- Kafka ---------------------------------------------------------------------------------

    async def publish(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Publish (base topic, key, value) records and wait until all are acknowledged."""
        assert self.producer is not None
        futs = []
        for base, key, value in items:
            futs.append(
                await self.producer.send(
                    self.t(base), key=key.encode(), value=json.dumps(value).encode()
                )
            )
        await self.producer.flush()
        await asyncio.gather(*futs)

    # -- PostgreSQL ----------------------------------------------------------------------------

    async def db_connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
