"""FundedFlow benchmarks: one command, a table of figures against the goals, and a JSON file.

    .venv/bin/python -m bench.run [--quick]
        [--only throughput,mixes,ceiling,floor,latency,http,restart,core] [--profile] [--keep]

Needs the local stack (`scripts/stack.sh up`; `eval "$(scripts/stack.sh env)"`). Starts its own
workers (`python -m app.cli worker`) under a fresh topic prefix, PostgreSQL schema and data
directories, and removes them afterwards (`--keep` leaves them). Writes
`bench/results/<UTC timestamp>.json`; a full run (no --quick, no --only) is also copied to
`docs/performance.json`. `--profile` samples the worker with py-spy (if installed) during the
one-worker throughput runs (and each mix). `mixes` measures one worker on young, deep,
long-history and hot accounts (bench/phases.py, `Bench.mixes`). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cluster import REPO, Cluster
from bench.phases import FULL, MIX_NAMES, QUICK, Bench, load_note

PHASES = (
    "throughput",
    "mixes",
    "packs",
    "feed",
    "ceiling",
    "floor",
    "latency",
    "http",
    "restart",
    "core",
)
ALIASES = {"memory": "restart", "sink": "throughput"}

GOALS = {
    "throughput_per_worker": 5000.0,
    "latency_p99_ms": 50.0,
    "get_p99_ms": 20.0,
    "post_p99_ms": 150.0,
    "sink_lag_p99_s": 2.0,
    "restart_s": 10.0,
}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "kafka": _kafka_version(),
        "postgresql": _pg_version(),
    }


def _git() -> dict[str, Any]:
    """The commit measured, and whether the work tree had changes on top of it."""

    def run(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout

    dirty = [
        line[3:]
        for line in run("status", "--porcelain").splitlines()
        if line and not line[3:].startswith(("bench/", "docs/performance"))
    ]
    return {"commit": run("rev-parse", "--short", "HEAD").strip(), "uncommitted_files": dirty}


def _kafka_version() -> str | None:
    pom = REPO / "scripts" / "kafka" / "pom.xml"
    try:
        m = re.search(r"<kafka.version>(.*?)</kafka.version>", pom.read_text())
    except OSError:
        return None
    return m.group(1) if m else None


def _pg_version() -> str | None:
    exe = shutil.which("psql")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\(PostgreSQL\) (\S+)", out.stdout)
    return m.group(1) if m else None


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def figures(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the table: figure, value, goal, met (None where there is no goal)."""
    rows: list[dict[str, Any]] = []

    def row(
        key: str, label: str, value: Any, unit: str, goal: str = "", met: bool | None = None
    ) -> None:
        if value is None:
            return
        rows.append(
            {"key": key, "figure": label, "value": value, "unit": unit, "goal": goal, "met": met}
        )

    one = _get(r, "throughput", "one_worker", "events_per_second")
    two = _get(r, "throughput", "two_workers", "events_per_second")
    ceiling = _get(r, "ceiling", "events_per_second")
    g = GOALS["throughput_per_worker"]
    row(
        "throughput_1w",
        "Trade events/s, 1 worker",
        one,
        "ev/s",
        f">= {g:,.0f}",
        None if one is None else one >= g,
    )
    row(
        "throughput_2w",
        "Trade events/s, 2 workers (2 cores)",
        two,
        "ev/s",
        f">= {2 * g:,.0f}",
        None if two is None else two >= 2 * g,
    )
    row(
        "throughput_1w_cpu",
        "Worker CPU per event, 1 worker, saturated",
        _get(r, "throughput", "one_worker", "worker_cpu_us_per_event"),
        "us",
    )
    row(
        "latency_cpu",
        "Worker CPU per event at 1/2 max",
        _get(r, "latency", "worker_cpu_us_per_event"),
        "us",
    )
    _mix_rows(r, row)
    row("ceiling", "Plain aiokafka consume+produce loop", ceiling, "ev/s")
    if one and ceiling:
        row("ratio_1w_ceiling", "1 worker / aiokafka ceiling", round(one / ceiling, 2), "x")
    json_ceiling = _get(r, "ceiling", "with_json", "events_per_second")
    row("ceiling_json", "aiokafka loop + the worker's JSON decode/encode", json_ceiling, "ev/s")
    if one and json_ceiling:
        ratio = round(one / json_ceiling, 2)
        row("ratio_1w_ceiling_json", "1 worker / aiokafka + JSON ceiling", ratio, "x")
    floor = r.get("floor") or {}
    for variant, label in (
        ("consume", "Faust floor: agent that only iterates"),
        ("table", "Faust floor: + table get/set (2 KB)"),
        ("table_send", "Faust floor: + table + 2 sends"),
    ):
        row(f"floor_{variant}", label, _get(floor, variant, "events_per_second"), "ev/s")
    lat = r.get("latency") or {}
    g = GOALS["latency_p99_ms"]
    row(
        "latency_idle_p99",
        "Rule latency p99, probes only (no background load)",
        _get(lat, "idle", "p99_ms"),
        "ms",
    )
    quarter = lat.get("quarter_of_max") or {}
    row(
        "latency_quarter_p99",
        f"Rule latency p99 at {quarter.get('background_events_per_second', 0):,} ev/s (1/4 max)",
        quarter.get("p99_ms"),
        "ms",
    )
    at = f" at {lat.get('background_events_per_second', 0):,} ev/s (1/2 max)"
    row("latency_p50", "Rule latency p50" + at, lat.get("p50_ms"), "ms")
    row(
        "latency_p99",
        "Rule latency p99" + at,
        lat.get("p99_ms"),
        "ms",
        f"<= {g:.0f}",
        None if lat.get("p99_ms") is None else lat["p99_ms"] <= g,
    )
    row("latency_max", "Rule latency max" + at, lat.get("max_ms"), "ms")
    row(
        "latency_vs_reference",
        "Rule latency p99 / 1.5 s reference poll",
        lat.get("p99_over_reference"),
        "x",
    )
    get = _get(r, "http", "get_account_via_non_owner") or {}
    g = GOALS["get_p99_ms"]
    row(
        "get_p50",
        f"GET account via non-owner p50 @{get.get('rate_per_second', 0):.0f}/s",
        get.get("p50_ms"),
        "ms",
    )
    row(
        "get_p99",
        f"GET account via non-owner p99 @{get.get('rate_per_second', 0):.0f}/s",
        get.get("p99_ms"),
        "ms",
        f"<= {g:.0f}",
        None if get.get("p99_ms") is None else get["p99_ms"] <= g,
    )
    post = _get(r, "http", "post_withdraw") or {}
    g = GOALS["post_p99_ms"]
    row("post_p50", "POST withdraw p50", post.get("p50_ms"), "ms")
    row(
        "post_p99",
        "POST withdraw p99",
        post.get("p99_ms"),
        "ms",
        f"<= {g:.0f}",
        None if post.get("p99_ms") is None else post["p99_ms"] <= g,
    )
    g = GOALS["sink_lag_p99_s"]
    for label, key in (("1 worker", "one_worker"), ("2 workers", "two_workers")):
        lag = _get(r, "throughput", key, "sink_lag_p99_s")
        row(
            f"sink_lag_{key}",
            f"Sink lag p99, throughput run, {label}",
            lag,
            "s",
            f"<= {g:.0f}",
            None if lag is None else lag <= g,
        )
    lag = lat.get("sink_lag_p99_s")
    row(
        "sink_lag_half",
        "Sink lag p99 at 1/2 max (latency run)",
        lag,
        "s",
        f"<= {g:.0f}",
        None if lag is None else lag <= g,
    )
    restart = _get(r, "restart", "warm") or {}
    held = _get(r, "restart", "accounts")
    g = GOALS["restart_s"]
    total = restart.get("stop_and_start_s")
    row(
        "restart",
        f"Restart, {held:,} accounts: stop + start to serving" if held else "Restart",
        total,
        "s",
        f"<= {g:.0f}",
        None if total is None else total <= g,
    )
    row("restart_start", "  of which start to serving", restart.get("start_to_serving_s"), "s")
    cold = _get(r, "restart", "cold_empty_data_dir", "start_to_serving_s")
    row("restart_cold", "Cold start, empty data dir, to serving", cold, "s")
    mem = r.get("memory") or {}
    row(
        "memory_per_100k",
        "Worker RSS per 100,000 accounts",
        mem.get("rss_mib_per_100k_accounts"),
        "MiB",
    )
    row(
        "memory_rss",
        f"Worker RSS holding {mem.get('accounts', 0):,} accounts",
        mem.get("rss_mib"),
        "MiB",
    )
    row(
        "rocksdb_per_100k",
        "RocksDB on disk per 100,000 accounts",
        mem.get("rocksdb_mib_per_100k_accounts"),
        "MiB",
    )
    core = r.get("core") or {}
    row(
        "core_us",
        "Account agent's pure-Python work per event",
        core.get("us_per_event_total"),
        "us",
    )
    for x in rows:
        x["load1"] = _load_of(r, x["key"])
    return rows


def _mix_rows(r: dict[str, Any], row: Callable[..., None]) -> None:
    """Per mix of `Bench.mixes`: events/s (goal: the per-worker goal for the young mix, within
    10 % of it for the others), the ratio to the young mix, and worker CPU per event."""
    mixes = r.get("mixes") or {}
    g = GOALS["throughput_per_worker"]
    for name in MIX_NAMES:
        m = mixes.get(name)
        if not m:
            continue
        size = f"{m['accounts']:,} accounts, {m['events']:,} events"
        before = _get(m, "history_before_window", "events_each")
        if before:
            size += f", {before:,} applied each before"
        eps = m.get("events_per_second")
        ratio = m.get("ratio_to_young")
        young = name == MIX_NAMES[0]
        row(
            f"mix_{name}_eps",
            f"Mix {name} ({size}), 1 worker",
            eps,
            "ev/s",
            f">= {g:,.0f}" if young else "",
            (None if eps is None else eps >= g) if young else None,
        )
        if not young:
            row(
                f"mix_{name}_ratio",
                f"  {name} / young",
                ratio,
                "x",
                ">= 0.90",
                None if ratio is None else ratio >= 0.9,
            )
        row(
            f"mix_{name}_cpu",
            f"  {name}: worker CPU per event",
            m.get("worker_cpu_us_per_event"),
            "us",
        )


LOAD_SOURCES: dict[str, tuple[str, ...]] = {
    "throughput_1w": ("throughput", "one_worker", "load_before"),
    "sink_lag_one_worker": ("throughput", "one_worker", "load_before"),
    "throughput_1w_cpu": ("throughput", "one_worker", "load_before"),
    "throughput_2w": ("throughput", "two_workers", "load_before"),
    "sink_lag_two_workers": ("throughput", "two_workers", "load_before"),
    "ceiling": ("ceiling", "load_before"),
    "ratio_1w_ceiling": ("ceiling", "load_before"),
    "ceiling_json": ("ceiling", "with_json", "load_before"),
    "ratio_1w_ceiling_json": ("ceiling", "with_json", "load_before"),
    "floor_consume": ("floor", "consume", "load"),
    "floor_table": ("floor", "table", "load"),
    "floor_table_send": ("floor", "table_send", "load"),
    "latency_idle_p99": ("latency", "idle", "load_before"),
    "latency_quarter_p99": ("latency", "quarter_of_max", "load_before"),
    "latency": ("latency", "load_before"),
    "sink_lag_half": ("latency", "load_before"),
    "get": ("http", "get_account_via_non_owner", "load_before"),
    "post": ("http", "post_withdraw", "load_before"),
    "restart_cold": ("restart", "cold_empty_data_dir", "load_before"),
    "restart": ("restart", "warm", "load_before"),
    "memory": ("memory", "load"),
    "rocksdb": ("memory", "load"),
    "core": ("load_at_start",),
    **{f"mix_{name}": ("mixes", name, "load_before") for name in MIX_NAMES},
}


def _load_of(r: dict[str, Any], key: str) -> float | None:
    """The 1-minute load average when the figure's phase started."""
    path = LOAD_SOURCES.get(key)
    if path is None:
        path = next((v for k, v in LOAD_SOURCES.items() if key.startswith(k + "_")), None)
    got = _get(r, *path) if path else None
    return got.get("load1") if isinstance(got, dict) else None


def table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    head = ("figure", "value", "goal", "met?", "load")
    body = [
        (
            x["figure"],
            f"{fmt(x['value'])} {x['unit']}",
            x["goal"],
            "" if x["met"] is None else ("yes" if x["met"] else "NO"),
            "" if x.get("load1") is None else f"{x['load1']:.2f}",
        )
        for x in rows
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)), line]
    for r in body:
        out.append(
            "  ".join(
                (c.rjust(w) if i == 1 else c.ljust(w))
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(out)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The same table in Markdown (for docs/performance.md)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    out = [
        "| figure | value | goal | met? | load average |",
        "|---|---:|---|---|---:|",
    ]
    for x in rows:
        met = "" if x["met"] is None else ("yes" if x["met"] else "**no**")
        goal = x["goal"].replace(">=", "≥").replace("<=", "≤")
        load = "" if x.get("load1") is None else f"{x['load1']:.2f}"
        out.append(
            f"| {x['figure'].strip()} | {fmt(x['value'])} {x['unit']} | {goal} | {met} | {load} |"
        )
    return "\n".join(out)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = QUICK if args.quick else FULL
    wanted = set(PHASES)
    if args.only:
        wanted = set()
        for name in args.only.split(","):
            name = ALIASES.get(name.strip(), name.strip())
            if name not in PHASES:
                raise SystemExit(f"bench: unknown phase {name!r} (choose from {', '.join(PHASES)})")
            wanted.add(name)
    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "command": " ".join([".venv/bin/python -m bench.run", *sys.argv[1:]]),
        "mode": "quick" if args.quick else "full",
        "phases": sorted(wanted),
        "machine": machine(),
        "code": _git(),
        "load_at_start": load_note(),
        "config": {k: v for k, v in cfg.__dict__.items()},
        "goals": GOALS,
    }
    t0 = time.monotonic()
    if "core" in wanted:
        from bench.core import measure

        report["core"] = await asyncio.to_thread(measure, 2000 if args.quick else 10_000)
    stream_phases = wanted - {"core"}
    if stream_phases:
        cluster = Cluster.from_env(cfg.partitions)
        bench = Bench(
            cluster, cfg, results_dir, profile=args.profile, latency_rate=args.latency_rate
        )
        report["topic_prefix"] = cluster.prefix
        report["db_schema"] = cluster.schema
        try:
            await cluster.setup()
            await bench.setup()
            if "throughput" in wanted:
                await bench.throughput()
            if "mixes" in wanted:
                await bench.mixes()
            if "packs" in wanted:
                await bench.packs()
            if "feed" in wanted:
                await bench.feed()
            if "ceiling" in wanted:
                await bench.ceiling()
            if "floor" in wanted:
                await bench.floor()
            if "latency" in wanted:
                await bench.latency()
            if "http" in wanted:
                await bench.http()
            if "restart" in wanted:
                await bench.memory_and_restart()
        except BaseException:
            for w in cluster.workers:
                if w.running:
                    print(f"--- {w.name} log tail ---\n{w.tail(2000)}", file=sys.stderr)
            raise
        finally:
            report.update(bench.results)
            await cluster.close(keep=args.keep, logs_to=results_dir / f"{report['stamp']}-logs")
    report["seconds"] = round(time.monotonic() - t0, 1)
    report["load_at_end"] = load_note()
    report["figures"] = figures(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run (about 3 minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated phases: {', '.join(PHASES)}")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the one-worker and latency runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep topics, schema and data dirs")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=None,
        help="background events/s of the latency run (default: half the one-worker maximum)",
    )
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    out = REPO / "bench" / "results" / f"{report['stamp']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report["figures"]) + "\n")
    if not args.quick and not args.only:
        (REPO / "docs" / "performance.json").write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report["figures"]))
    la = report["load_at_start"]
    print(
        f"\nmode {report['mode']}, {report['seconds']:.0f}s; load average at start "
        f"{la['load1']}/{la['load5']}/{la['load15']}, at end "
        f"{report['load_at_end']['load1']}; {report['machine']['nproc']} cores"
    )
    print(f"results: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
