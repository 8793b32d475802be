"""A small Faust app for the plumbing test: counts per key in a RocksDB, changelog-backed table.

Run as `python -m tests.integration.plumbing_app` with PLUMBING_PREFIX, PLUMBING_DATADIR,
PLUMBING_WEB_PORT and KAFKA_BOOTSTRAP_SERVERS in the environment.
"""

from __future__ import annotations

import json
import os

import faust

prefix = os.environ["PLUMBING_PREFIX"]
app = faust.App(
    f"{prefix}plumbing",
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    store="rocksdb://",
    datadir=os.environ["PLUMBING_DATADIR"],
    topic_partitions=2,
    table_standby_replicas=1,
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_port=int(os.environ["PLUMBING_WEB_PORT"]),
)
source = app.topic(f"{prefix}plumbing.in", partitions=2)
sink = app.topic(f"{prefix}plumbing.out", partitions=2)
counts = app.Table(
    "counts",
    default=int,
    partitions=2,
    key_type=str,
)


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        key = event.message.key.decode()
        counts[key] += 1
        out = {"key": key, "count": counts[key], "pid": os.getpid()}
        await sink.send(key=event.message.key, value=json.dumps(out).encode(), force=True)


if __name__ == "__main__":
    faust.Worker(app, loglevel="info").execute_from_commandline()
