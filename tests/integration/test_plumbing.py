"""Plumbing: a Faust app on the real broker keeps its RocksDB table across a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.conftest import Services
from tests.support import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _start(services: Services, prefix: str, datadir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka,
        "PLUMBING_PREFIX": prefix,
        "PLUMBING_DATADIR": str(datadir),
        "PLUMBING_WEB_PORT": str(free_port()),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.plumbing_app"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def _produce(services: Services, topic: str, keys: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka)
    await producer.start()
    try:
        for k in keys:
            await producer.send_and_wait(topic, key=k.encode(), value=b"1")
    finally:
        await producer.stop()


async def _collect(consumer: AIOKafkaConsumer, n: int, timeout: float) -> list[dict]:
    got: list[dict] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for records in batch.values():
            got.extend(json.loads(r.value) for r in records)
    return got


def test_table_state_survives_restart(
    services: Services, topic_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    datadir = tmp_path / "data"

    async def scenario() -> tuple[list[dict], list[dict]]:
        # Topics first: the broker's auto-create would make one-partition topics.
        admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
        await admin.start()
        await admin.create_topics(
            [NewTopic(f"{topic_prefix}plumbing.{n}", 2, 1) for n in ("in", "out")]
        )
        await admin.close()
        consumer = AIOKafkaConsumer(
            f"{topic_prefix}plumbing.out",
            bootstrap_servers=services.kafka,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            worker = _start(services, topic_prefix, datadir, log)
            try:
                await _produce(services, f"{topic_prefix}plumbing.in", ["a", "b", "a", "c", "a"])
                first = await _collect(consumer, 5, timeout=90)
            finally:
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=60) is not None
            worker = _start(services, topic_prefix, datadir, log)
            try:
                await _produce(services, f"{topic_prefix}plumbing.in", ["a", "b"])
                second = await _collect(consumer, 2, timeout=90)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
            return first, second
        finally:
            await consumer.stop()

    first, second = asyncio.run(scenario())
    tail = log.read_text(errors="replace")[-3000:]
    assert len(first) == 5, tail
    assert max(o["count"] for o in first if o["key"] == "a") == 3
    assert len(second) == 2, tail
    after = {o["key"]: o["count"] for o in second}
    # The restarted worker continued from the stored counts, not from zero.
    assert after == {"a": 4, "b": 2}, tail
    assert first[0]["pid"] != second[0]["pid"]
    assert list(datadir.rglob("*.sst")) or list(datadir.rglob("CURRENT")), "no RocksDB files"
