"""The framework's floor: a minimal Faust worker over the same `trades` records.

    python -m bench.floor_app VARIANT BOOTSTRAP TOPIC COUNT DATA_DIR

Same Faust settings as FundedFlow's app (RocksDB store, acks=all, linger 1 ms, commit every
second, raw bytes), one agent, and per event only:

- `consume`: iterate `stream.events()` and do nothing;
- `table`: + read and write a 2 KB JSON value in a RocksDB-backed, changelogged table (what
  the account agent's state costs in Faust, without the domain);
- `table_send`: + send two records with `force=True` (the snapshot and one fact).

So `table_send` is the most a FundedFlow worker could reach with its current shape (one table
write and two sends per event) if its own code cost nothing. Prints one JSON line and exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

import faust

from bench.stats import steady_rate

VALUE = {
    "state": {"filler": "x" * 1600, "version": 0, "positions": [], "applied": ["t-1"] * 10},
    "outbox": [],
}


def build(variant: str, bootstrap: str, topic_name: str, count: int, data_dir: str) -> faust.App:
    prefix = topic_name.rsplit("trades", 1)[0]
    app = faust.App(
        f"{prefix}floor-{variant}-{uuid.uuid4().hex[:6]}",
        broker=";".join(f"kafka://{s}" for s in bootstrap.split(",")),
        store="rocksdb://",
        datadir=data_dir,
        topic_partitions=8,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger_ms=1,
        reply_create_topic=False,
    )
    topic = app.topic(topic_name, partitions=8)
    out = app.topic(f"{prefix}bench.floor-out", partitions=8)
    table = app.Table("floor", default=None, partitions=8, key_type=str)
    series: list[tuple[float, float]] = []
    state: dict[str, Any] = {"n": 0, "t0": None}

    def finish() -> None:
        t_end = time.monotonic()
        t0 = state["t0"] or t_end
        result = {
            "variant": variant,
            "events": state["n"],
            "steady_eps": steady_rate(series, float(count)),
            "overall_eps": state["n"] / (t_end - t0) if t_end > t0 else None,
        }
        print(json.dumps(result), flush=True)
        os._exit(0)

    @app.agent(topic, name="floor")
    async def floor(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            n = state["n"] = state["n"] + 1
            if state["t0"] is None:
                state["t0"] = time.monotonic()
            if variant != "consume":
                key = event.message.key.decode() if event.message.key else "none"
                value = table.get(key) or VALUE
                table[key] = value
                if variant == "table_send":
                    raw = event.message.value
                    await out.send(key=event.message.key, value=raw, force=True)
                    await out.send(key=event.message.key, value=raw, force=True)
            if n % 500 == 0:
                series.append((time.monotonic(), float(n)))
            if n >= count:
                finish()

    return app


def main() -> int:
    variant, bootstrap, topic, count, data_dir = sys.argv[1:6]
    if os.environ.get("FF_FLOOR_LOOP"):
        # Trying another event loop (e.g. uvloop) on the floor; not used by the suite.
        import mode.loop

        mode.loop.use(os.environ["FF_FLOOR_LOOP"])
    app = build(variant, bootstrap, topic, int(count), data_dir)
    worker = faust.Worker(app, loglevel="info")
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
