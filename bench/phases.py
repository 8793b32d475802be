"""The measurements, in the order `bench.run` makes them, on one cluster of real workers.

Worker layout over a run: setup and the two-worker throughput run use w1 + w2; the one-worker
throughput run, the mixes, the rule latency, memory and restart use w1 alone (holding every
account); the HTTP figures use w1 + w2 again (a GET asked of the worker that does not own the
account).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import load
from bench.cluster import REPO, Cluster, Worker, bearer, dir_bytes, rss_bytes
from bench.load import LONG_HISTORY_BAND_CENTS, Account, TradeMix
from bench.profile import Profiler, find_py_spy, summarize
from bench.stats import percentile, steady_rate, summary_ms, time_at

DLQ_METRIC = "fundedflow_dead_letters_total"

# The one-worker mixes of `Bench.mixes` (issue 11 point 6), in the order they are measured; the
# first is the reference of the others' ratios.
MIX_NAMES = ("young_2000x20", "mid_20x2000", "deep_5x12000", "long_history", "hot")


@dataclass(frozen=True)
class Config:
    quick: bool
    accounts: int  # trading accounts (the throughput and latency load)
    events: int  # trade events per throughput run
    probe_accounts: int
    violation_accounts: int
    withdraw_accounts: int
    latency_seconds: float
    probe_rate: float
    get_rate: float
    get_seconds: float
    post_rate: float
    post_seconds: float
    restart_accounts: int  # accounts held by the one worker that is restarted
    grow_chunk: int
    # The mixes (`Bench.mixes`): (fresh accounts, events each) ...
    mix_young: tuple[int, int]
    mix_mid: tuple[int, int]
    mix_deep: tuple[int, int]
    # ... long history: (accounts, events each applied before the window, events each measured)
    mix_long: tuple[int, int, int]
    # ... hot: (accounts, events in all); 1 % of the accounts get half of the events
    mix_hot: tuple[int, int]
    partitions: int = 8
    fallback_rate: float = 1000.0  # latency load when the throughput run was left out
    # The live feed (`Bench.feed`): accounts streamed, streams in all, seconds of trading.
    feed_accounts: int = 100
    feed_streams: int = 1_000
    feed_seconds: float = 30.0
    feed_backlog_events: int = 40_000  # each of the four backlog runs (with, without, ...)


FULL = Config(
    quick=False,
    accounts=10_000,
    events=100_000,
    probe_accounts=200,
    violation_accounts=150,
    withdraw_accounts=100,
    latency_seconds=60,
    probe_rate=20,
    get_rate=200,
    get_seconds=30,
    post_rate=20,
    post_seconds=20,
    restart_accounts=100_000,
    grow_chunk=30_000,
    mix_young=(2_000, 20),
    mix_mid=(20, 2_000),
    mix_deep=(5, 12_000),
    mix_long=(5, 20_500, 12_000),
    mix_hot=(2_000, 40_000),
)
QUICK = Config(
    quick=True,
    accounts=2_000,
    events=15_000,
    probe_accounts=60,
    violation_accounts=40,
    withdraw_accounts=30,
    latency_seconds=15,
    probe_rate=20,
    get_rate=200,
    get_seconds=8,
    post_rate=20,
    post_seconds=5,
    restart_accounts=6_000,
    grow_chunk=2_000,
    mix_young=(400, 20),
    mix_mid=(10, 600),
    mix_deep=(5, 1_200),
    mix_long=(5, 2_500, 1_200),
    mix_hot=(400, 8_000),
    feed_accounts=50,
    feed_streams=200,
    feed_seconds=10.0,
    feed_backlog_events=10_000,
)


def load_note() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2)}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return total - idle, total


@dataclass
class Progress:
    """The stream's progress (inputs the account agent applied: processed minus dead letters,
    from the workers' /metrics) and the database's (sum of the account rows' versions: every
    applied input adds one), sampled together; the sink lag at a moment is how long ago the
    stream was where the database is now."""

    cluster: Cluster
    workers: list[Worker]
    conn: Any
    stream: list[tuple[float, float]] = field(default_factory=list)
    db: list[tuple[float, float]] = field(default_factory=list)
    gauges: list[float] = field(default_factory=list)
    processed_base: float = 0.0
    base: float = 0.0
    db_base: float = 0.0

    async def scrape(self) -> tuple[float, float, float] | None:
        """(processed, applied, database versions) now; None if a worker did not answer."""
        got, db_now = await asyncio.gather(
            asyncio.gather(*(self.cluster.metrics(w) for w in self.workers)),
            self.conn.fetchval("SELECT coalesce(sum(version), 0) FROM funded_virtual_accounts"),
        )
        if any(m is None for m in got):
            return None
        processed = applied = 0.0
        for m in got:
            assert m is not None
            dlq = sum(v for k, v in m.items() if k.startswith(DLQ_METRIC))
            processed += m.get("fundedflow_events_processed_total", 0.0)
            applied += m.get("fundedflow_events_processed_total", 0.0) - dlq
            self.gauges.append(m.get("fundedflow_sink_lag_seconds", 0.0))
        return processed, applied, float(db_now)

    async def start(self) -> None:
        got = await self.scrape()
        assert got is not None
        self.processed_base, self.base, self.db_base = got
        self.gauges.clear()

    async def sample(self) -> tuple[float, float, float] | None:
        """(processed, applied, in the database) since `start`."""
        ts = time.monotonic()
        got = await self.scrape()
        mid = (ts + time.monotonic()) / 2
        if got is None:
            return None
        processed, applied, db_now = got
        self.db.append((mid, db_now - self.db_base))
        self.stream.append((mid, applied - self.base))
        return processed - self.processed_base, applied - self.base, db_now - self.db_base

    def lags(self, since: float) -> list[float]:
        out = []
        for t, d in self.db:
            if t < since:
                continue
            t_stream = time_at(self.stream, d) if d > 0 else since
            out.append(max(0.0, t - (t_stream if t_stream is not None else t)))
        return out


@dataclass
class Bench:
    cluster: Cluster
    cfg: Config
    results_dir: Path
    profile: bool = False
    latency_rate: float | None = None  # background load of the latency run (default: half max)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    trading: list[Account] = field(default_factory=list)
    probes: list[Account] = field(default_factory=list)
    violations: list[Account] = field(default_factory=list)
    withdrawers: list[Account] = field(default_factory=list)
    extra_accounts: int = 0
    mix: TradeMix | None = None
    results: dict[str, Any] = field(default_factory=dict)
    w1: Worker | None = None
    w2: Worker | None = None
    _flat_probes: list[Account] = field(default_factory=list)
    _open_probes: list[Account] = field(default_factory=list)
    _unused_violation: list[Account] = field(default_factory=list)
    _probe_positions: dict[str, str] = field(default_factory=dict)
    _probe_seq: int = 0

    # -- helpers -------------------------------------------------------------------------------

    @property
    def total_accounts(self) -> int:
        return (
            len(self.trading)
            + len(self.probes)
            + len(self.violations)
            + len(self.withdrawers)
            + self.extra_accounts
        )

    def say(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)

    async def wait_processed(
        self, workers: list[Worker], target: int, timeout: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout
        last: int | None = None
        while time.monotonic() < deadline:
            for w in workers:
                w.check()
            last = await self.cluster.processed(workers)
            if last is not None and last >= target:
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"timed out waiting for {what}: processed {last} of {target}")

    async def db_versions(self, conn: Any) -> int:
        return int(
            await conn.fetchval("SELECT coalesce(sum(version), 0) FROM funded_virtual_accounts")
        )

    async def db_settled(self, conn: Any, timeout: float = 120) -> int:
        """Waits until the database stops changing (the sink has caught up)."""
        deadline = time.monotonic() + timeout
        last = await self.db_versions(conn)
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = await self.db_versions(conn)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 1.5:
                return now
        return last

    async def layout(self, workers: list[Worker]) -> None:
        """Exactly these workers running, healthy, and owning every account between them."""
        c = self.cluster
        for w in c.running():
            if w not in workers:
                self.say(f"stopping {w.name}")
                w.stop()
        for w in workers:
            if not w.running:
                self.say(f"starting {w.name}")
                w.start()
        await asyncio.sleep(1.0)
        await c.wait_healthy(workers)
        sample = random.Random(1).sample(self.trading, min(24, len(self.trading)))
        deadline = time.monotonic() + 120
        while True:
            owners = [await c.owner_of(a.account_id, a.user_id) for a in sample]
            if all(o is not None for o in owners) and (
                len(workers) == 1 or len({o.name for o in owners if o}) == len(workers)
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not settle on an assignment")
            await asyncio.sleep(0.5)
        await self.quiesce(workers)

    async def quiesce(self, workers: list[Worker], timeout: float = 180) -> dict[str, float]:
        """Waits until every worker is idle (under 15 % of a core over one second): a worker
        that just joined replays its standby changelogs and the sink may still be writing."""
        deadline = time.monotonic() + timeout
        shares: dict[str, float] = {}
        while time.monotonic() < deadline:
            before = {w.name: cpu_seconds(w.pid) for w in workers}
            await asyncio.sleep(1.0)
            after = {w.name: cpu_seconds(w.pid) for w in workers}
            shares = {k: round((after[k] or 0) - (before[k] or 0), 2) for k in before if before[k]}
            if all(v < 0.15 for v in shares.values()):
                break
        self.results.setdefault("idle_worker_cpu_share", {}).update(shares)
        return shares

    # -- setup ---------------------------------------------------------------------------------

    async def setup(self) -> None:
        c, cfg = self.cluster, self.cfg
        t0 = time.monotonic()
        self.trading = load.make_accounts(self.run_id, "t", 0, cfg.accounts)
        self.probes = load.make_accounts(self.run_id, "p", 0, cfg.probe_accounts)
        self.violations = load.make_accounts(self.run_id, "v", 0, cfg.violation_accounts)
        self.withdrawers = load.make_accounts(self.run_id, "w", 0, cfg.withdraw_accounts)
        self.mix = TradeMix(self.trading, run=self.run_id)
        self._flat_probes = list(self.probes)
        self._unused_violation = list(self.violations)
        self.w1, self.w2 = c.add_worker(), c.add_worker()
        for w in (self.w1, self.w2):
            w.start()
        started = await c.wait_healthy([self.w1, self.w2])
        self.say(f"two workers healthy after {started:.1f}s; activating accounts")
        everyone = self.trading + self.probes + self.violations + self.withdrawers
        t_act = time.monotonic()
        await c.publish(
            [("assessment.completed", a.assessment_id, load.assessment(a)) for a in everyone]
        )
        await self.wait_processed([self.w1, self.w2], len(everyone), 600, "activations")
        activation_s = time.monotonic() - t_act
        # Withdrawal accounts get a closed winning trade: 8,000.00 withdrawable each.
        profits = []
        for a in self.withdrawers:
            acct = a.account_id
            profits.append(("trades", acct, load.opened(acct, "p-win", f"win-o-{acct}", 100_000)))
            profits.append(("trades", acct, load.closed(acct, "p-win", f"win-c-{acct}", 1_000_000)))
        await c.publish(profits)
        await self.wait_processed(
            [self.w1, self.w2], len(everyone) + len(profits), 300, "withdrawal accounts"
        )
        self.results["setup"] = {
            "accounts": len(everyone),
            "workers_start_seconds": round(started, 1),
            "activation_seconds": round(activation_s, 1),
            "activations_per_second": round(len(everyone) / activation_s),
            "seconds": round(time.monotonic() - t0, 1),
            "load": load_note(),
        }
        self.say(f"setup done: {len(everyone)} accounts in {activation_s:.1f}s")

    # -- throughput ----------------------------------------------------------------------------

    async def _throughput_run(
        self,
        workers: list[Worker],
        label: str,
        events: list[tuple[str, str, dict[str, Any]]] | None = None,
        min_rate: float = 300.0,
    ) -> dict[str, Any]:
        """Pause the workers (SIGSTOP), fill `trades` with `events` (default: `cfg.events` of
        `self.mix`), resume them and follow their progress. Fails if processing is slower than
        `min_rate` events/s on average (after at least 180 s)."""
        c = self.cluster
        if events is None:
            assert self.mix is not None
            events = self.mix.batch(self.cfg.events)
        n = len(events)
        conn = await c.db_connect()
        try:
            await self.db_settled(conn)
            progress = Progress(c, workers, conn)
            await progress.start()
            for w in workers:
                w.pause()
            t_fill = time.monotonic()
            try:
                await c.publish(events)
            finally:
                fill_s = time.monotonic() - t_fill
            cpu0 = {w.name: cpu_seconds(w.pid) for w in workers}
            busy0 = machine_busy()
            load_before = load_note()
            profiler = None
            spy = find_py_spy() if self.profile and len(workers) == 1 else None
            if spy:
                prof_path = self.results_dir / f"profile-{label}-{self.run_id}.txt"
                profiler = Profiler(spy, workers[0].pid or 0, prof_path)
            t0 = time.monotonic()
            for w in workers:
                w.resume()
            progress.stream.append((t0, 0.0))
            t_done: float | None = None
            applied_at_done = float(n)
            deadline = t0 + max(180.0, n / min_rate)
            drain_deadline = deadline
            while True:
                ts = time.monotonic()
                got = await progress.sample()
                if got is not None:
                    processed, applied, in_db = got
                    if t_done is None and processed >= n:
                        t_done = time_at(progress.stream, applied) or time.monotonic()
                        if profiler is not None:
                            profiler.stop()
                        cpu1 = {w.name: cpu_seconds(w.pid) for w in workers}
                        busy1 = machine_busy()
                        applied_at_done = applied
                        drain_deadline = time.monotonic() + float(
                            os.environ.get("FF_BENCH_DRAIN_TIMEOUT", "120")
                        )
                    if t_done is not None and in_db >= applied_at_done:
                        break
                if time.monotonic() > (drain_deadline if t_done else deadline):
                    if t_done is None:
                        raise RuntimeError(f"{label}: processing did not finish in time")
                    break
                for w in workers:
                    w.check()
                await asyncio.sleep(max(0.0, 0.2 - (time.monotonic() - ts)))
            t_db_done = progress.db[-1][0]
        finally:
            await conn.close()
        assert t_done is not None
        lags = progress.lags(t0)
        steady = steady_rate(progress.stream, applied_at_done)
        overall = applied_at_done / (t_done - t0)
        cpu = {w: round((cpu1[w] or 0) - (cpu0[w] or 0), 1) for w in cpu0 if cpu0[w] is not None}
        busy_delta = busy1[0] - busy0[0]
        total_delta = busy1[1] - busy0[1]
        out: dict[str, Any] = {
            "workers": len(workers),
            "events": n,
            "accounts": len({key for _, key, _ in events}),
            "prefill_seconds": round(fill_s, 1),
            "seconds": round(t_done - t0, 1),
            "events_per_second": round(steady) if steady else round(overall),
            "events_per_second_overall": round(overall),
            "worker_cpu_seconds": cpu,
            "worker_cpu_share_of_a_core": {w: round(v / (t_done - t0), 2) for w, v in cpu.items()},
            # Less sensitive to other load on the machine than the rate: CPU per event.
            "worker_cpu_us_per_event": round(sum(cpu.values()) / n * 1e6),
            "machine_cpu_busy_share": round(busy_delta / total_delta, 2) if total_delta else None,
            "dead_letters": round(n - applied_at_done),
            "sink_lag_p50_s": round(percentile(lags, 50) or 0.0, 2),
            "sink_lag_p99_s": round(percentile(lags, 99) or 0.0, 2),
            "sink_lag_max_s": round(max(lags), 2) if lags else None,
            "sink_caught_up_after_stream_s": round(max(0.0, t_db_done - t_done), 1),
            "sink_lag_gauge_p99_s": round(percentile(progress.gauges, 99) or 0.0, 2),
            "mix": load.shares(events),
            "load_before": load_before,
            "load_after": load_note(),
        }
        if profiler is not None:
            out["profile"] = summarize(profiler.out, t_done - t0, profiler.rate)
            out["profile"]["raw_file"] = str(profiler.out)
        return out

    async def throughput(self) -> None:
        assert self.w1 and self.w2
        await self.layout([self.w1, self.w2])
        self.say(f"throughput, two workers: {self.cfg.events} events")
        two = await self._throughput_run([self.w1, self.w2], "two")
        self.say(
            f"  two workers: {two['events_per_second']} events/s, "
            f"{two['worker_cpu_us_per_event']} us CPU/event"
        )
        await self.layout([self.w1])
        self.say(f"throughput, one worker: {self.cfg.events} events")
        one = await self._throughput_run([self.w1], "one")
        self.say(
            f"  one worker: {one['events_per_second']} events/s, "
            f"{one['worker_cpu_us_per_event']} us CPU/event"
        )
        self.results["throughput"] = {"one_worker": one, "two_workers": two}

    async def mixes(self) -> None:
        """One worker, trade backlogs on the account mixes a prop firm sees (issue 11 point 6):
        young accounts, a few deep ones, accounts past 20,000 applied events before the window,
        and hot accounts (1 % of them get half of the events). Each mix on fresh accounts
        (long_history: its own, prefilled unmeasured), each account's events in order and kept
        open (realized P&L within a band), measured as `_throughput_run` measures."""
        assert self.w1
        cfg = self.cfg
        await self.layout([self.w1])
        young_n, young_k = cfg.mix_young
        mid_n, mid_k = cfg.mix_mid
        deep_n, deep_k = cfg.mix_deep
        long_n, long_before, long_k = cfg.mix_long
        hot_n, hot_events = cfg.mix_hot
        # name: (accounts, events per account in the window, events per account before it)
        plans: dict[str, tuple[int, list[int], int]] = {
            "young_2000x20": (young_n, [young_k] * young_n, 0),
            "mid_20x2000": (mid_n, [mid_k] * mid_n, 0),
            "deep_5x12000": (deep_n, [deep_k] * deep_n, 0),
            "long_history": (long_n, [long_k] * long_n, long_before),
            "hot": (hot_n, load.skewed_counts(hot_n, hot_events), 0),
        }
        assert tuple(plans) == MIX_NAMES
        out: dict[str, Any] = {}
        self.results["mixes"] = out
        for i, (name, (count, per_account, before)) in enumerate(plans.items()):
            res = await self._mix_run(name, f"m{i}", count, per_account, before)
            young = out.get(MIX_NAMES[0], res)
            for key, ratio in (
                ("events_per_second", "ratio_to_young"),
                ("events_per_second_overall", "ratio_to_young_overall"),
            ):
                res[ratio] = round(res[key] / young[key], 2) if young[key] else None
            out[name] = res
            self.say(
                f"  {name}: {res['events']:,} events on {res['accounts']:,} accounts"
                + (f" ({before:,} applied each before)" if before else "")
                + f": {res['events_per_second']} events/s steady, "
                f"{res['events_per_second_overall']} overall, "
                f"{res['worker_cpu_us_per_event']} us CPU/event, "
                f"{res['ratio_to_young']}x young, {res['dead_letters']} dead letters"
            )

    async def packs(self) -> None:
        """One worker, the same trade backlog on the two-rule tier of section 4 and on a tier
        with every rule of a rule pack on (issue 12: within 15 %), alternated over rounds on
        fresh accounts so that the machine's drift hits both alike."""
        assert self.w1
        cfg = self.cfg
        await self.layout([self.w1])
        count, each = cfg.mix_young
        rounds = 2 if count < 1000 else 3
        runs: dict[str, list[dict[str, Any]]] = {"two_rules": [], "every_rule": []}
        for r in range(rounds):
            order = [("two_rules", load.TIER), ("every_rule", load.EVERY_RULE_TIER)]
            for name, tier in order if r % 2 == 0 else order[::-1]:
                res = await self._mix_run(
                    f"packs-{name}-{r}", f"k{r}{name[0]}", count, [each] * count, 0, tier=tier
                )
                runs[name].append(res)
        out: dict[str, Any] = {}
        for name, results in runs.items():
            rates = [x["events_per_second"] for x in results]
            cpu = [x["worker_cpu_us_per_event"] for x in results]
            out[name] = {
                "events_per_second": rates,
                "worker_cpu_us_per_event": cpu,
                "dead_letters": [x["dead_letters"] for x in results],
            }
        two, every = out["two_rules"], out["every_rule"]
        out["ratio_events_per_second"] = round(
            sum(every["events_per_second"]) / sum(two["events_per_second"]), 3
        )
        out["ratio_cpu_per_event"] = round(
            sum(every["worker_cpu_us_per_event"]) / sum(two["worker_cpu_us_per_event"]), 3
        )
        out["accounts"], out["events_per_account"], out["rounds"] = count, each, rounds
        self.results["packs"] = out
        self.say(
            f"packs: every rule / two rules = {out['ratio_events_per_second']} (events/s), "
            f"{out['ratio_cpu_per_event']} (CPU per event)"
        )

    async def _mix_run(
        self,
        name: str,
        group: str,
        count: int,
        per_account: list[int],
        before: int,
        tier: str = load.TIER,
    ) -> dict[str, Any]:
        """Activates `count` fresh accounts on w1, applies `before` events to each (not
        measured), then measures the backlog of `per_account` events."""
        assert self.w1
        c, w = self.cluster, self.w1
        accounts = load.make_accounts(self.run_id, group, 0, count)
        mix = TradeMix(
            accounts, run=f"{self.run_id}-{group}", seed=11, pnl_band_cents=LONG_HISTORY_BAND_CENTS
        )
        self.say(f"mix {name}: activating {count:,} fresh accounts")
        base = await c.processed([w])
        assert base is not None
        await c.publish(
            [("assessment.completed", a.assessment_id, load.assessment(a, tier)) for a in accounts]
        )
        self.extra_accounts += count
        await self.wait_processed([w], base + count, 600, f"{name} activations")
        prefill: dict[str, Any] = {}
        if before:
            history = mix.deal([before] * count)
            self.say(f"mix {name}: applying {before:,} events to each account first (not measured)")
            base = await c.processed([w])
            dead0 = await self._dead_letters([w])
            assert base is not None
            t0 = time.monotonic()
            await c.publish(history)
            await self.wait_processed(
                [w], base + len(history), max(600.0, len(history) / 50), f"{name} history"
            )
            took = time.monotonic() - t0
            dead = await self._dead_letters([w]) - dead0
            if dead:
                raise RuntimeError(f"{name}: {dead:.0f} dead letters while applying the history")
            prefill = {
                "events_each": before,
                "events": len(history),
                "seconds": round(took, 1),
                "events_per_second": round(len(history) / took),
            }
            del history
        await self.quiesce([w])
        self.say(f"mix {name}: {sum(per_account):,} events on {count:,} accounts, one worker")
        res = await self._throughput_run([w], f"mix-{name}", mix.deal(per_account), min_rate=50.0)
        res["accounts"] = count
        res["events_per_account"] = {"min": min(per_account), "max": max(per_account)}
        if prefill:
            res["history_before_window"] = prefill
        return res

    async def feed(self) -> None:
        """The live risk feed (issue 13): `feed_streams` streams over both workers, each on
        the worker that does not own its account, while trades flow at half the two-worker
        maximum. Measures the delay from the owner's view (its `as_of`, taken when the change
        is stored) to the event read by the client, the workers' RSS per 1,000 streams, and a
        trade backlog's throughput with the streams open beside the same without them."""
        assert self.w1 and self.w2 and self.mix is not None
        c, cfg = self.cluster, self.cfg
        await self.layout([self.w1, self.w2])
        targets: list[tuple[Account, Worker]] = []
        for a in self.trading[: cfg.feed_accounts]:
            owner = await c.owner_of(a.account_id, a.user_id)
            if owner is not None:
                targets.append((a, self.w2 if owner is self.w1 else self.w1))
        if not targets:
            raise RuntimeError("feed: no account's owner could be found")
        workers = [self.w1, self.w2]

        def rss() -> int:
            return sum(rss_bytes(w.pid or 0) or 0 for w in workers)

        two = self.results.get("throughput", {}).get("two_workers", {})
        max_eps = two.get("events_per_second")
        rate = max_eps / 2 if max_eps else cfg.fallback_rate
        out: dict[str, Any] = {"streams": cfg.feed_streams, "accounts": len(targets)}
        streams = FeedStreams(targets, cfg.feed_streams)
        rss_deltas: list[float] = []

        async def open_streams() -> None:
            # A worker that just (re)started is still growing or giving back memory: the RSS
            # before is taken once it holds still, the RSS after once the streams are open.
            before = await steady_rss(rss)
            await streams.open()
            await asyncio.sleep(2)
            after = await steady_rss(rss)
            rss_deltas.append((after - before) / 2**20 * 1000 / cfg.feed_streams)

        self.say(f"feed: opening {cfg.feed_streams} streams on the non-owners")
        await open_streams()
        out["rss_mib_per_1000_streams"] = round(rss_deltas[0], 1)
        out["connect_seconds"] = streams.connect_seconds
        self.say(
            f"feed: {rate:.0f} trade events/s for {cfg.feed_seconds:.0f}s with the streams open"
        )
        streams.reset()
        producer = AIOKafkaProducer(bootstrap_servers=c.kafka.split(","), acks="all", linger_ms=5)
        await producer.start()
        try:
            end = time.monotonic() + cfg.feed_seconds
            await send_paced(
                producer, c.t("trades"), self.mix, rate, lambda: time.monotonic() >= end
            )
            await producer.flush()
        finally:
            await producer.stop()
        await asyncio.sleep(2)
        lat = streams.latencies
        out["trading"] = {
            "rate_per_second": round(rate),
            "seconds": cfg.feed_seconds,
            "events_received": len(lat),
            "publish_to_client_ms": summary_ms(lat),
            "streams_still_open": streams.open_count(),
        }
        coalesced = 0.0
        for w in workers:
            m = await c.metrics(w) or {}
            coalesced += sum(
                v for k, v in m.items() if k == "fundedflow_risk_events_coalesced_total"
            )
        out["trading"]["coalesced"] = round(coalesced)
        self.say(
            f"  feed: {len(lat)} events read, publish->client p50 "
            f"{out['trading']['publish_to_client_ms']['p50_ms']} ms, p99 "
            f"{out['trading']['publish_to_client_ms']['p99_ms']} ms"
        )
        # The throughput cost: the same kind of backlog with the streams open and without them,
        # in the order with, without, without, with (a machine that drifts during the four
        # runs then weighs on both sides alike).
        runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for n, side in enumerate(("with", "without", "without", "with")):
            if side == "with" and streams.open_count() == 0:
                await open_streams()
            if side == "without" and streams.open_count() > 0:
                await streams.close()
            assert self.mix is not None
            batch = self.mix.batch(cfg.feed_backlog_events)
            runs[side].append(await self._throughput_run(workers, f"feed-{side}-{n}", batch))
        await streams.close()
        out["rss_mib_per_1000_streams_each_opening"] = [round(d, 1) for d in rss_deltas]
        for side, done in runs.items():
            out[f"backlog_{side}_streams"] = [r["events_per_second"] for r in done]
            out[f"backlog_cpu_us_per_event_{side}"] = [r["worker_cpu_us_per_event"] for r in done]
        mean = {side: sum(r["events_per_second"] for r in d) / len(d) for side, d in runs.items()}
        out["backlog_with_over_without"] = round(mean["with"] / mean["without"], 3)
        self.results["feed"] = out
        self.say(
            f"  backlog: {out['backlog_with_streams']} events/s with the streams open, "
            f"{out['backlog_without_streams']} without: {out['backlog_with_over_without']}"
        )

    async def _dead_letters(self, workers: list[Worker]) -> float:
        got = await asyncio.gather(*(self.cluster.metrics(w) for w in workers))
        if any(m is None for m in got):
            raise RuntimeError("a worker did not answer /metrics")
        return sum(v for m in got if m for k, v in m.items() if k.startswith(DLQ_METRIC))

    async def ceiling(self) -> None:
        """A plain aiokafka loop over the same `trades` records, in its own process."""
        c = self.cluster
        out_topic = c.t("bench.ceiling-out")
        admin = AIOKafkaAdminClient(bootstrap_servers=c.kafka.split(","))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(out_topic, c.partitions, 1)])
            desc = await admin.describe_topics([c.t("trades")])
        finally:
            await admin.close()
        tps = [TopicPartition(c.t("trades"), p["partition"]) for p in desc[0]["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=c.kafka.split(","))
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        available = sum(ends.values())
        if available < self.cfg.events:
            assert self.mix is not None
            await c.publish(self.mix.batch(self.cfg.events - available))
            available = self.cfg.events
        count = min(available, 2 * self.cfg.events)
        self.results["ceiling"] = {}
        for mode, label in (("plain", "plain aiokafka"), ("json", "aiokafka + the worker's JSON")):
            self.say(f"ceiling: {label} consume-and-produce over {count} records")
            load_before = load_note()
            argv = [sys.executable, "-m", "bench.ceiling", c.kafka, c.t("trades"), out_topic]
            argv += [str(count), mode]
            proc = await asyncio.to_thread(
                subprocess.run, argv, cwd=REPO, capture_output=True, text=True, timeout=600
            )
            if proc.returncode != 0:
                raise RuntimeError(f"ceiling loop failed:\n{proc.stderr[-2000:]}")
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            eps = res["steady_eps"] or res["overall_eps"]
            figures = {
                "records": count,
                "events_per_second": round(eps),
                "events_per_second_overall": round(res["overall_eps"] or 0),
                "outputs_per_input": 2,
                "load_before": load_before,
                "load_after": load_note(),
            }
            if mode == "plain":
                self.results["ceiling"].update(figures)  # the figures' old place
            else:
                self.results["ceiling"]["with_json"] = figures
            self.say(f"  ceiling ({label}): {round(eps)} events/s")

    async def floor(self) -> None:
        """Minimal Faust workers over the same records: what the framework costs alone."""
        c = self.cluster
        admin = AIOKafkaAdminClient(bootstrap_servers=c.kafka.split(","))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(c.t("bench.floor-out"), c.partitions, 1)])
        finally:
            await admin.close()
        count = min(self.cfg.events, 30_000)
        out: dict[str, Any] = {"records": count}
        for variant in ("consume", "table", "table_send"):
            self.say(f"Faust floor '{variant}' over {count} records")
            data_dir = c.root / f"floor-{variant}"
            proc = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable,
                    "-m",
                    "bench.floor_app",
                    variant,
                    c.kafka,
                    c.t("trades"),
                    str(count),
                    str(data_dir),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=600,
            )
            # Faust's worker sends stdout to its log: the line may carry a log prefix.
            found = [
                x[x.index('{"variant"') :].rsplit("}", 1)[0] + "}"
                for x in (proc.stdout + proc.stderr).splitlines()
                if '{"variant"' in x
            ]
            if not found:
                raise RuntimeError(f"floor {variant} failed:\n{proc.stderr[-2000:]}")
            res = json.loads(found[-1])
            eps = res["steady_eps"] or res["overall_eps"]
            out[variant] = {"events_per_second": round(eps), "load": load_note()}
            self.say(f"  {variant}: {round(eps)} events/s")
        self.results["floor"] = out

    # -- rule latency --------------------------------------------------------------------------

    async def latency(self) -> None:
        assert self.w1 and self.mix is not None
        cfg = self.cfg
        await self.layout([self.w1])
        one = self.results.get("throughput", {}).get("one_worker", {})
        max_eps = one.get("events_per_second")
        rate = self.latency_rate or (max_eps / 2 if max_eps else cfg.fallback_rate)
        idle_s = max(5.0, cfg.latency_seconds / 4)
        self.say(f"rule latency, no other load: {cfg.probe_rate:.0f} probes/s for {idle_s:.0f}s")
        idle = await self._latency_run(0.0, idle_s)
        self.say(f"  idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms")
        self.say(
            f"rule latency: {rate:.0f} events/s background (half of the one-worker maximum) "
            f"for {cfg.latency_seconds:.0f}s, {cfg.probe_rate:.0f} probes/s"
        )
        loaded = await self._latency_run(rate, cfg.latency_seconds)
        loaded["of_measured_max"] = max_eps
        loaded["idle"] = idle
        if not cfg.quick:
            quarter_s = cfg.latency_seconds / 2
            self.say(f"rule latency: {rate / 2:.0f} events/s background for {quarter_s:.0f}s")
            quarter = await self._latency_run(rate / 2, quarter_s)
            loaded["quarter_of_max"] = quarter
            self.say(f"  quarter: p50 {quarter['p50_ms']} ms, p99 {quarter['p99_ms']} ms")
        self.results["latency"] = loaded
        self.say(
            f"  p50 {loaded['p50_ms']} ms, p99 {loaded['p99_ms']} ms, max {loaded['max_ms']} ms; "
            f"sink lag p99 {loaded['sink_lag_p99_s']}s; worker at "
            f"{loaded['worker_cpu_share_of_a_core']} of a core, "
            f"{loaded['worker_cpu_us_per_event']} us CPU/event"
        )

    async def _latency_run(self, rate: float, seconds: float) -> dict[str, Any]:
        """Probe trade events among `rate` background events/s; each probe changes one rule's
        status (or breaks a rule), and its fact is read back from the rules topics."""
        assert self.w1 and self.mix is not None
        c, cfg = self.cluster, self.cfg
        topics = [c.t("rules.status-changed"), c.t("rules.violation-detected")]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.kafka.split(","), enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await consumer.start()
        tps = []
        for t in topics:
            parts = consumer.partitions_for_topic(t)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(t) or set()
            tps += [TopicPartition(t, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        background = AIOKafkaProducer(bootstrap_servers=c.kafka.split(","), acks="all", linger_ms=5)
        probe_producer = AIOKafkaProducer(
            bootstrap_servers=c.kafka.split(","), acks="all", linger_ms=0
        )
        await background.start()
        await probe_producer.start()
        conn = await c.db_connect()
        progress = Progress(c, [self.w1], conn)
        await progress.start()

        # account_id -> (sent at, fact type awaited)
        pending: dict[str, tuple[float, str]] = {}
        # (seconds into the run when sent, latency): to see whether slow probes come in bursts.
        timeline: list[tuple[float, float]] = []
        t_start = time.monotonic()
        status_changed, violation = "rules.status-changed", "rules.violation-detected"
        samples: dict[str, list[float]] = {status_changed: [], violation: []}
        flat = self._flat_probes
        opened_probe = self._open_probes
        stop = asyncio.Event()

        async def reader() -> None:
            while not (stop.is_set() and not pending):
                batches = await consumer.getmany(timeout_ms=50)
                now = time.monotonic()
                for records in batches.values():
                    for r in records:
                        fact = json.loads(r.value)
                        acct = fact.get("account_id")
                        want = pending.get(acct)
                        if want is not None and fact.get("type") == want[1]:
                            samples[want[1]].append(now - want[0])
                            timeline.append((round(want[0] - t_start, 3), round(now - want[0], 4)))
                            del pending[acct]

        async def paced_background() -> None:
            assert self.mix is not None
            await send_paced(background, c.t("trades"), self.mix, rate, stop.is_set)

        async def probing() -> None:
            n = 0
            t0 = time.monotonic()
            while not stop.is_set():
                n += 1
                target = t0 + n / cfg.probe_rate
                await asyncio.sleep(max(0.0, target - time.monotonic()))
                self._probe_seq += 1
                seq = self._probe_seq
                if n % 10 == 0 and self._unused_violation:
                    a = self._unused_violation.pop()
                    event = load.opened(a.account_id, "p-v", f"v-{a.account_id}", 600_000)
                    want = violation
                else:
                    # Open a position on a flat probe account (risk 0.84 of its limit: safe to
                    # warning) or close it (warning to safe): one status change per probe.
                    use_flat = bool(flat) and len(flat) >= len(opened_probe)
                    pool = flat if use_flat else opened_probe
                    found = next((x for x in pool if x.account_id not in pending), None)
                    if found is None:
                        continue
                    a = found
                    pool.remove(a)
                    want = status_changed
                    if use_flat:
                        event = load.opened(a.account_id, f"p-{seq}", f"po-{seq}", 420_000)
                        self._probe_positions[a.account_id] = event["position_id"]
                        opened_probe.append(a)
                    else:
                        pos = self._probe_positions.pop(a.account_id)
                        event = load.closed(a.account_id, pos, f"pc-{seq}", 0)
                        flat.append(a)
                pending[a.account_id] = (time.monotonic(), want)
                await probe_producer.send(
                    c.t("trades"), key=a.account_id.encode(), value=json.dumps(event).encode()
                )

        async def tracking() -> None:
            while not stop.is_set():
                await progress.sample()
                await asyncio.sleep(0.25)

        load_before = load_note()
        profiler = None
        spy = find_py_spy() if self.profile and rate > 0 else None
        if spy:
            out = self.results_dir / f"profile-latency-{round(rate)}-{self.run_id}.txt"
            profiler = Profiler(spy, self.w1.pid or 0, out)
        cpu0 = cpu_seconds(self.w1.pid)
        t_start = time.monotonic()
        read_task = asyncio.create_task(reader())
        tasks = [
            asyncio.create_task(paced_background()),
            asyncio.create_task(probing()),
            asyncio.create_task(tracking()),
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t_start
        cpu1 = cpu_seconds(self.w1.pid)
        if profiler is not None:
            profiler.stop()
        try:
            await asyncio.wait_for(read_task, 10)
        except TimeoutError:
            read_task.cancel()
        missing = len(pending)
        # Probes never answered are forgotten (their accounts are left out of later runs).
        await background.stop()
        await probe_producer.stop()
        await consumer.stop()
        await conn.close()
        lags = progress.lags(t_start)
        every = samples[status_changed] + samples[violation]
        s = summary_ms(every)
        ref_ms = 1500.0
        extra: dict[str, Any] = {}
        if profiler is not None:
            extra["profile"] = summarize(profiler.out, elapsed, profiler.rate)
            extra["profile"]["raw_file"] = str(profiler.out)
        return {
            **extra,
            "background_events_per_second": round(rate),
            "probes_per_second": cfg.probe_rate,
            "seconds": round(elapsed, 1),
            **s,
            "status_changed": summary_ms(samples[status_changed]),
            "violation_detected": summary_ms(samples[violation]),
            "missing": missing,
            "reference_poll_interval_ms": ref_ms,
            "p99_over_reference": round((s["p99_ms"] or 0) / ref_ms, 4),
            "reference_over_p50": round(ref_ms / s["p50_ms"], 1) if s["p50_ms"] else None,
            "worker_cpu_share_of_a_core": (
                round((cpu1 - cpu0) / elapsed, 2) if cpu0 is not None and cpu1 is not None else None
            ),
            "worker_cpu_us_per_event": (
                round((cpu1 - cpu0) / (elapsed * (rate + cfg.probe_rate)) * 1e6)
                if cpu0 is not None and cpu1 is not None
                else None
            ),
            "sink_lag_p50_s": round(percentile(lags, 50) or 0.0, 2),
            "sink_lag_p99_s": round(percentile(lags, 99) or 0.0, 2),
            "slow_probes": [x for x in timeline if x[1] > 0.05],
            "load_before": load_before,
            "load_after": load_note(),
        }

    # -- HTTP ----------------------------------------------------------------------------------

    async def _fixed_rate(
        self,
        rate: float,
        seconds: float,
        request: Callable[[int], Awaitable[tuple[int, str]]],
    ) -> dict[str, Any]:
        """Open-loop requests at `rate`/s: each is started at its time whatever the others do."""
        t0 = time.monotonic() + 0.05
        total = int(rate * seconds)
        latencies: list[float] = []
        by_group: dict[str, list[float]] = {}
        statuses: dict[str, int] = {}
        slips: list[float] = []

        async def one(i: int) -> None:
            at = t0 + i / rate
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            start = time.monotonic()
            slips.append(start - at)
            try:
                status, group = await request(i)
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                return
            took = time.monotonic() - start
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if 200 <= status < 300:
                latencies.append(took)
                by_group.setdefault(group, []).append(took)

        load_before = load_note()
        await asyncio.gather(*(one(i) for i in range(total)))
        return {
            "rate_per_second": rate,
            "requests": total,
            **summary_ms(latencies),
            "statuses": statuses,
            "by_route": {g: summary_ms(v) for g, v in by_group.items()},
            "client_start_slip_p99_ms": round((percentile(slips, 99) or 0) * 1000, 2),
            "load_before": load_before,
            "load_after": load_note(),
        }

    async def http(self) -> None:
        assert self.w1 and self.w2 and self.cluster.session is not None
        c, cfg = self.cluster, self.cfg
        await self.layout([self.w1, self.w2])
        session = c.session
        sample = random.Random(2).sample(self.trading, min(300, len(self.trading)))
        targets: list[tuple[Account, Worker]] = []
        for a in sample:
            owner = await c.owner_of(a.account_id, a.user_id)
            if owner is not None:
                targets.append((a, self.w2 if owner is self.w1 else self.w1))
        tokens = {a.account_id: bearer(a.user_id) for a, _ in targets}
        # A few warm-up requests: connections, and the forwarding session in each worker.
        for a, other in targets[:20]:
            await c.get(other, f"/funded-accounts/{a.account_id}", tokens[a.account_id])

        async def get(i: int) -> tuple[int, str]:
            a, other = targets[i % len(targets)]
            async with session.get(
                f"{other.url}/funded-accounts/{a.account_id}",
                headers=tokens[a.account_id],
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                await resp.read()
                return resp.status, "forwarded"

        self.say(f"HTTP GET through the non-owner: {cfg.get_rate:.0f}/s for {cfg.get_seconds:.0f}s")
        get_res = await self._fixed_rate(cfg.get_rate, cfg.get_seconds, get)
        self.say(f"  GET p50 {get_res['p50_ms']} ms, p99 {get_res['p99_ms']} ms")

        owners: list[tuple[Account, Worker, Worker]] = []
        for a in self.withdrawers:
            owner = await c.owner_of(a.account_id, a.user_id)
            if owner is not None:
                owners.append((a, owner, self.w2 if owner is self.w1 else self.w1))
        wtokens = {a.account_id: bearer(a.user_id) for a, _, _ in owners}
        completed = 0

        async def post(i: int) -> tuple[int, str]:
            nonlocal completed
            a, owner, other = owners[i % len(owners)]
            # Alternate: asked of the owner, then of the other worker (forwarded).
            via, group = (owner, "owner") if (i // len(owners)) % 2 == 0 else (other, "forwarded")
            headers = {**wtokens[a.account_id], "Idempotency-Key": uuid.uuid4().hex}
            body = {
                "amount": "100.00",
                "payment_method": "stripe_connect",
                "destination": "acct_1Bench",
            }
            async with session.post(
                f"{via.url}/funded-accounts/{a.account_id}/withdraw",
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                answer = await resp.json(content_type=None)
                if resp.status == 201 and answer["withdrawal"]["status"] == "completed":
                    completed += 1
                return resp.status, group

        # Warm-up, left out of the figures: connections to Redis, Stripe and the other worker.
        for i in range(4):
            await post(i * len(owners) + i)
        completed = 0
        self.say(
            f"HTTP POST withdraw (100.00, paid at once): {cfg.post_rate:.0f}/s "
            f"for {cfg.post_seconds:.0f}s"
        )
        post_res = await self._fixed_rate(cfg.post_rate, cfg.post_seconds, post)
        post_res["completed_in_answer"] = completed
        self.say(f"  POST p50 {post_res['p50_ms']} ms, p99 {post_res['p99_ms']} ms")
        self.results["http"] = {
            "get_account_via_non_owner": get_res,
            "post_withdraw": post_res,
            "stripe": "stripe-mock" if c.stripe_double is None else "recording double",
        }

    # -- memory and restart --------------------------------------------------------------------

    async def memory_and_restart(self) -> None:
        assert self.w1
        c, cfg = self.cluster, self.cfg
        await self.layout([self.w1])
        w = self.w1
        curve: list[tuple[int, int]] = []
        await asyncio.sleep(1.0)
        rss = rss_bytes(w.pid or 0)
        if rss:
            curve.append((self.total_accounts, rss))
        grow_s = 0.0
        grown = 0
        while self.total_accounts < cfg.restart_accounts:
            chunk = min(cfg.grow_chunk, cfg.restart_accounts - self.total_accounts)
            new = load.make_accounts(self.run_id, "g", self.extra_accounts, chunk)
            base = await c.processed([w])
            assert base is not None
            self.say(f"memory: activating {chunk} more accounts ({self.total_accounts} held)")
            t0 = time.monotonic()
            await c.publish(
                [("assessment.completed", a.assessment_id, load.assessment(a)) for a in new]
            )
            await self.wait_processed([w], base + chunk, 900, "growth activations")
            grow_s += time.monotonic() - t0
            grown += chunk
            self.extra_accounts += chunk
            await asyncio.sleep(1.0)
            rss = rss_bytes(w.pid or 0)
            if rss:
                curve.append((self.total_accounts, rss))
        slope = _slope(curve)
        data_bytes = dir_bytes(w.data_dir)
        held = self.total_accounts
        self.results["memory"] = {
            "accounts": held,
            "rss_mib": round(curve[-1][1] / 2**20, 1) if curve else None,
            "rss_curve": [{"accounts": a, "rss_mib": round(r / 2**20, 1)} for a, r in curve],
            "rss_mib_per_100k_accounts": round(slope * 100_000 / 2**20, 1) if slope else None,
            "rocksdb_mib": round(data_bytes / 2**20, 1),
            "rocksdb_mib_per_100k_accounts": round(data_bytes / held * 100_000 / 2**20, 1),
            "activations_per_second": round(grown / grow_s) if grow_s else None,
            "load": load_note(),
        }
        self.say(
            f"  RSS {self.results['memory']['rss_mib']} MiB with {held} accounts; "
            f"slope {self.results['memory']['rss_mib_per_100k_accounts']} MiB/100k"
        )
        probe = self.trading[0]
        warm = await self._restart(w, probe, wipe=False)
        warm["rss_mib_after_start"] = round((rss_bytes(w.pid or 0) or 0) / 2**20, 1)
        self.say(f"restart with {held} accounts: serving after {warm['start_to_serving_s']}s")
        res: dict[str, Any] = {"accounts": held, "warm": warm}
        if not cfg.quick:
            cold = await self._restart(w, probe, wipe=True)
            self.say(f"  cold start (empty data dir): serving after {cold['start_to_serving_s']}s")
            res["cold_empty_data_dir"] = cold
        self.results["restart"] = res

    async def _restart(self, w: Worker, probe: Account, wipe: bool) -> dict[str, Any]:
        c = self.cluster
        load_before = load_note()
        stop_s = w.stop()
        if wipe:
            import shutil

            shutil.rmtree(w.data_dir, ignore_errors=True)
        t0 = time.monotonic()
        w.start()
        headers = bearer(probe.user_id)
        healthy_at: float | None = None
        while True:
            w.check()
            if time.monotonic() - t0 > 600:
                raise RuntimeError("the restarted worker did not serve in 600 s")
            try:
                if healthy_at is None:
                    status, _ = await c.get(w, "/health", timeout=2)
                    if status == 200:
                        healthy_at = time.monotonic()
                if healthy_at is not None:
                    status, _ = await c.get(
                        w, f"/funded-accounts/{probe.account_id}", headers, timeout=2
                    )
                    if status == 200:
                        break
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        served = time.monotonic() - t0
        return {
            "stop_seconds": round(stop_s, 1),
            "start_to_healthy_s": round((healthy_at or t0) - t0, 1),
            "start_to_serving_s": round(served, 1),
            "stop_and_start_s": round(stop_s + served, 1),
            "load_before": load_before,
            "load_after": load_note(),
        }


def _slope(points: list[tuple[int, int]]) -> float | None:
    """Least-squares bytes per account."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def _as_of_epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def send_paced(
    producer: AIOKafkaProducer,
    topic: str,
    mix: TradeMix,
    rate: float,
    done: Callable[[], bool],
) -> None:
    """Send `mix`'s trade events to `topic` at `rate` a second (in 5 ms steps) until `done()`."""
    t0 = time.monotonic()
    sent = 0
    while not done() and rate > 0:
        due = int((time.monotonic() - t0) * rate)
        for _ in range(due - sent):
            acct, event = mix.next()
            await producer.send(topic, key=acct.encode(), value=json.dumps(event).encode())
        sent = max(sent, due)
        await asyncio.sleep(0.005)


async def steady_rss(
    read: Callable[[], int], tolerance: float = 0.01, every: float = 1.0, limit: float = 30.0
) -> int:
    """`read()` once two readings `every` seconds apart differ by at most `tolerance` (or the
    last reading after `limit` seconds)."""
    last = read()
    waited = 0.0
    while waited < limit:
        await asyncio.sleep(every)
        waited += every
        now = read()
        if abs(now - last) <= tolerance * max(last, 1):
            return now
        last = now
    return last


class FeedStreams:
    """The bench's risk stream clients: one aiohttp session, each stream read to its end; the
    delay of each event after the first from its view's `as_of`."""

    def __init__(self, targets: list[tuple[Account, Worker]], count: int) -> None:
        self.targets = targets
        self.count = count
        self.latencies: list[float] = []
        self.first_events = 0
        self.connect_seconds = 0.0
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._open = 0

    def reset(self) -> None:
        self.latencies = []

    def open_count(self) -> int:
        return self._open

    async def _follow(self, account: Account, worker: Worker) -> None:
        assert self._session is not None
        url = f"{worker.url}/funded-accounts/{account.account_id}/risk/stream"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._session.get(url, headers=bearer(account.user_id), timeout=timeout) as r:
            if r.status != 200:
                return
            self._open += 1
            first = True
            try:
                async for line in r.content:
                    if not line.startswith(b"data: "):
                        continue
                    now = time.time()
                    view = json.loads(line[6:])
                    if "as_of" not in view:
                        continue
                    if first:
                        first = False
                        self.first_events += 1
                        if self.first_events >= self.count:
                            self._ready.set()
                        continue
                    self.latencies.append(now - _as_of_epoch(view["as_of"]))
            finally:
                self._open -= 1

    async def open(self, timeout: float = 180) -> None:
        t0 = time.monotonic()
        self._ready = asyncio.Event()
        self.first_events = 0
        self._tasks = []
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for i in range(self.count):
            account, worker = self.targets[i % len(self.targets)]
            self._tasks.append(asyncio.create_task(self._follow(account, worker)))
        await asyncio.wait_for(self._ready.wait(), timeout)
        if not self.connect_seconds:  # the first opening's
            self.connect_seconds = round(time.monotonic() - t0, 1)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
