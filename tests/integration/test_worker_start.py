"""`fundedflow` at the command line: refusing to start, starting and stopping, the tier seed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka_admin import existing_partition_counts
from domain.tiers import default_catalog
from tests.integration import streams as s
from tests.integration.conftest import Services, pg_dsn
from tests.integration.harness import REPO, Kafka, worker_env
from tests.support import free_port

pytestmark = pytest.mark.integration

FUNDEDFLOW = Path(sys.executable).with_name("fundedflow")


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FUNDEDFLOW), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def topic_counts(services: Services, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        return await existing_partition_counts(admin, topics)
    finally:
        await admin.close()


def test_help_lists_the_commands() -> None:
    assert FUNDEDFLOW.exists(), f"console script missing: {FUNDEDFLOW}"
    out = run_cli(dict(os.environ), "--help", timeout=30)
    assert out.returncode == 0, out.stderr
    for command in ("worker", "migrate", "tiers"):
        assert command in out.stdout, out.stdout


@pytest.mark.parametrize(
    "base",
    [
        "trades",
        "fundedflow.account-commands",
        "fundedflow-accounts-changelog",
        # Inputs that feed no table are refused all the same (CONTRACT.md section 1).
        "assessment.completed",
        "tiers",
    ],
)
async def test_worker_refuses_an_input_topic_with_other_partitions(
    services: Services, tmp_path: Path, base: str
) -> None:
    prefix = s.uid("mis") + "."
    topic = f"{prefix}{base}"
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    env = worker_env(services, prefix)  # TOPIC_PARTITIONS=4
    assert env["TOPIC_PARTITIONS"] == "4"
    started = time.monotonic()
    out = await asyncio.to_thread(
        run_cli, env, "worker", "--data-dir", str(tmp_path / "data"), "--web-port", "0"
    )
    assert out.returncode != 0, out.stdout + out.stderr
    assert out.returncode == 3
    assert time.monotonic() - started < 30
    message = out.stderr
    assert repr(topic) in message and "2 partitions" in message, message
    assert "TOPIC_PARTITIONS is 4" in message, message
    assert "Traceback" not in out.stdout + out.stderr
    # Refused before anything was made: no other topic of the deployment exists.
    others = [f"{prefix}{b}" for b in ("trades", "fundedflow.account-commands", "tiers")]
    assert set(await topic_counts(services, others)) <= {topic}


def test_worker_without_a_token_key_says_which_setting(services: Services, tmp_path: Path) -> None:
    env = worker_env(services, s.uid("nojwt") + ".")
    env.pop("JWT_SECRET", None)
    env.pop("JWT_PUBLIC_KEY", None)
    out = run_cli(env, "worker", "--data-dir", str(tmp_path / "data"), timeout=30)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "JWT_SECRET" in out.stderr and "JWT_PUBLIC_KEY" in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "data").exists()  # stopped before touching anything


async def test_worker_starts_and_stops_cleanly_on_sigint(
    services: Services, module_schema: str, tmp_path: Path
) -> None:
    env = worker_env(services, s.uid("sigint") + ".", FUNDEDFLOW_DB_SCHEMA=module_schema)
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                str(FUNDEDFLOW),
                "worker",
                "--data-dir",
                str(tmp_path / "data"),
                "--web-port",
                str(free_port()),
            ],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Worker ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "worker not ready in 60 s"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # let it settle into consuming
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = await asyncio.to_thread(proc.wait, 20)
        took = time.monotonic() - asked
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    # mode's Worker ends a SIGINT-requested stop with exit code 0.
    assert code == 0, text[-4000:]
    assert took < 10, f"took {took:.1f}s to stop"
    assert "Traceback" not in text, text[-6000:]
    assert "Closing event loop" in text
    errors = [line for line in text.splitlines() if "[ERROR]" in line]
    print(f"\nSIGINT stop in {took:.2f}s; ERROR lines at stop: {errors or 'none'}")


async def test_tiers_seed_publishes_the_bundled_catalog(services: Services) -> None:
    prefix = s.uid("seed") + "."
    env = worker_env(services, prefix)
    out = await asyncio.to_thread(run_cli, env, "tiers", "seed")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"published {len(default_catalog())} tiers to {prefix}tiers" in out.stdout
    kafka = Kafka(services, prefix)
    records = await kafka.read_all(["tiers"])
    catalog = {t.tier_id: t.to_wire() for t in default_catalog()}
    assert len(records) == len(catalog)
    got: dict[str, Any] = {}
    for topic, key, value, _ in records:
        assert topic == f"{prefix}tiers" and key is not None and value is not None
        got[key.decode()] = json.loads(value)
    assert got == catalog


async def test_tiers_seed_refuses_a_file_with_a_bad_tier(
    services: Services, tmp_path: Path
) -> None:
    prefix = s.uid("badseed") + "."
    good = default_catalog()[0].to_wire()
    bad = {**default_catalog()[1].to_wire(), "tier_id": "funded-bad", "max_drawdown": "1.50"}
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps([good, bad]))
    out = await asyncio.to_thread(run_cli, worker_env(services, prefix), "tiers", "seed", str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    message = out.stderr
    assert str(path) in message and "invalid tier" in message and "max_drawdown" in message, message
    assert "Traceback" not in message
    assert "published" not in out.stdout
    # Nothing published, not even the good tier before the bad one.
    assert await Kafka(services, prefix).read_all(["tiers"]) == []


async def test_migrate_works_in_the_configured_schema(services: Services) -> None:
    """`fundedflow migrate` builds (and removes) the tables where the sink will look for them."""
    schema = f"cli_{uuid.uuid4().hex[:12]}"  # missing on purpose: migrate creates it
    env = worker_env(services, s.uid("mig") + ".", FUNDEDFLOW_DB_SCHEMA=schema)

    async def tables() -> set[str]:
        conn = await asyncpg.connect(pg_dsn(services))
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
            )
            return {r["table_name"] for r in rows}
        finally:
            await conn.close()

    try:
        up = await asyncio.to_thread(run_cli, env, "migrate")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"(schema {schema})" in up.stdout
        assert {
            "funded_accounts",
            "funded_virtual_accounts",
            "withdrawals",
            "account_events",
            "alembic_version",
        } <= await tables()
        again = await asyncio.to_thread(run_cli, env, "migrate")  # already at head: no-op
        assert again.returncode == 0, again.stdout + again.stderr
        down = await asyncio.to_thread(run_cli, env, "migrate", "--down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert await tables() <= {"alembic_version"}
    finally:
        conn = await asyncpg.connect(pg_dsn(services))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_created_topics_have_the_partitions_and_the_changelog_compacts(
    services: Services,
) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from app.kafka_admin import prepare_topics
    from app.topics import ACCOUNTS_TABLE, APPLIED_IDS_TABLE, TIERS, TopicNames

    names = TopicNames(s.uid("topics") + ".")
    await prepare_topics(services.kafka, names, 3, redelivery_window_hours=5)
    await prepare_topics(services.kafka, names, 3)  # a second worker: nothing to do
    counts = await topic_counts(services, names.all_created())
    assert counts == {t: 3 for t in names.all_created()}
    admin = AIOKafkaAdminClient(bootstrap_servers=services.kafka)
    await admin.start()
    try:
        changelog, tiers, trades, ids = (
            names.changelog(ACCOUNTS_TABLE),
            names.name(TIERS),
            names.name("trades"),
            names.changelog(APPLIED_IDS_TABLE),
        )
        answers = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in (changelog, tiers, trades, ids)]
        )
    finally:
        await admin.close()
    configs: dict[str, dict[str, str]] = {}
    for answer in answers:
        for _, _, _, name, entries in answer.resources:
            configs[name] = {e[0]: e[1] for e in entries}
    assert configs[changelog]["cleanup.policy"] == "compact"
    assert int(configs[changelog]["segment.bytes"]) == 64 << 20
    assert configs[tiers]["cleanup.policy"] == "compact"
    assert configs[trades]["cleanup.policy"] == "delete"
    # Applied ids: kept for the redelivery window, then deleted (compaction alone keeps them).
    assert set(configs[ids]["cleanup.policy"].split(",")) == {"compact", "delete"}
    assert int(configs[ids]["retention.ms"]) == 5 * 3_600_000
    assert int(configs[changelog]["retention.ms"]) != 5 * 3_600_000
