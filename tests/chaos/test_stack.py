"""The local stack's own promises: `up` twice is harmless, and `down` leaves nothing running.

It stops every service, so it lives with the chaos tests (run after everything else) and
starts the stack again before it ends.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

STATE = Path(os.environ.get("FUNDEDFLOW_STACK_DIR", REPO / ".stack")).resolve()
PORTS = {
    "kafka": int(os.environ.get("KAFKA_PORT", "9092")),
    "postgres": int(os.environ.get("POSTGRES_PORT", "5432")),
    "redis": int(os.environ.get("REDIS_PORT", "6379")),
    "stripe-mock": int(os.environ.get("STRIPE_MOCK_PORT", "12111")),
}


def stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["scripts/stack.sh", *args], cwd=REPO, capture_output=True, text=True, timeout=240
    )


def status_pids() -> dict[str, int]:
    out = stack("status")
    pids = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\S+)\s+up\s+\S+\s+pid (\d+)", line)
        if m:
            pids[m.group(1)] = int(m.group(2))
    return pids


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_in_state_dir() -> list[str]:
    """Live processes whose working directory is under the stack's state dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if (cwd == STATE or STATE in cwd.parents) and running(int(proc.name)):
            found.append(f"{proc.name} {(proc / 'comm').read_text().strip()} in {cwd}")
    return found


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_up_twice_is_harmless_and_down_leaves_nothing_behind() -> None:
    up = stack("up")
    assert up.returncode == 0, up.stdout + up.stderr
    before = status_pids()
    assert set(before) == set(PORTS), before

    again = stack("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_pids() == before, "a second `up` restarted a running service"

    down = stack("down")
    assert down.returncode == 0, down.stdout + down.stderr
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(running(p) for p in before.values()):
            time.sleep(0.2)
        assert not [s for s, p in before.items() if running(p)], down.stdout
        assert not processes_in_state_dir(), processes_in_state_dir()
        assert not [s for s, port in PORTS.items() if answers(port)]
        assert stack("status").returncode != 0
        again_down = stack("down")
        assert again_down.returncode == 0, again_down.stdout + again_down.stderr
    finally:
        first, second = stack("up"), stack("up")
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    after = status_pids()
    assert set(after) == set(PORTS) and all(answers(p) for p in PORTS.values())
    assert not set(after.values()) & set(before.values())
