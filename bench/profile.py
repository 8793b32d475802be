"""Sampling a worker with py-spy while it works, and the top costs of what it sampled.

py-spy is optional (`pip install py-spy`); without it the benchmarks run unprofiled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cluster import REPO


def find_py_spy() -> str | None:
    for candidate in (
        os.environ.get("PY_SPY"),
        shutil.which("py-spy"),
        str(REPO / ".venv" / "bin" / "py-spy"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class Profiler:
    """`py-spy record` of one process in raw (collapsed stack) form, stopped with SIGINT."""

    def __init__(self, exe: str, pid: int, out: Path, rate: int = 100) -> None:
        self.out = out
        self.rate = rate
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _frame_parts(frame: str) -> tuple[str, str]:
    """'process (agents/accounts.py:97)' -> ('process', 'agents/accounts.py:97')."""
    name, _, where = frame.rpartition(" (")
    return name, where.rstrip(")")


def _short(where: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in where:
            return where.split(marker, 1)[1]
    return where


def _package(where: str) -> str:
    """The top-level package (or stdlib module) of a frame's file."""
    path = _short(where).rsplit(":", 1)[0]
    if path.startswith("<"):
        return path
    head = path.split("/", 1)[0]
    return head[:-3] if head.endswith(".py") else head


def summarize(path: Path, seconds: float, rate: int, top: int = 15) -> dict[str, Any]:
    """Top self and inclusive costs from py-spy's collapsed stacks."""
    self_lines: Counter[str] = Counter()
    self_packages: Counter[str] = Counter()
    inclusive_fns: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f.endswith(")") and " (" in f]
        if not frames:
            continue
        total += count
        name, where = _frame_parts(frames[-1])
        self_lines[f"{_short(where)} {name}"] += count
        self_packages[_package(where)] += count
        seen: set[str] = set()
        for f in frames:
            fname, fwhere = _frame_parts(f)
            key = f"{_short(fwhere).rsplit(':', 1)[0]} {fname}"
            if key not in seen:
                seen.add(key)
                inclusive_fns[key] += count
    expected = seconds * rate

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        # py-spy leaves out idle samples: busy share of the main thread while profiled.
        "busy_share": round(total / expected, 2) if expected else None,
        "self_by_package": [
            {"package": k, "pct": pct(v)} for k, v in self_packages.most_common(top)
        ],
        "top_self": [{"where": k, "pct": pct(v)} for k, v in self_lines.most_common(top)],
        "top_inclusive": [
            {"function": k, "pct": pct(v)} for k, v in inclusive_fns.most_common(top * 3)
        ],
    }
