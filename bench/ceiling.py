"""The broker's ceiling for a Python client: a plain aiokafka consume-and-produce loop.

Run as its own process (`python -m bench.ceiling TOPIC OUT_TOPIC COUNT`) so it has a core to
itself like a worker. It reads COUNT records of TOPIC from the start with a fresh group and,
for each one, sends two records to OUT_TOPIC: the Kafka traffic a worker makes per trade event
at the least (its table's changelog record and the account snapshot), with the workers'
producer settings (acks=all, linger 1 ms), committing offsets every second as Faust does. No
JSON parsing, no state, no rules. Prints one JSON line: events per second over the middle
80 % of the records and overall.

With a fifth argument `json` it also does the worker's JSON work per record, with the worker's
own codec: the trade event is read by `app.codec.loads_object`, a young account's stored value
(about 1 KB, built by `young_account_value`) is decoded and encoded again as the worker reads
and writes its table, and the two records sent are that value (the changelog record) and an
encoded snapshot-sized object. Still no domain work: the gap to the worker is Faust and the
rules, not JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.codec import dumps, loads_object
from bench.stats import steady_rate


def young_account_value() -> bytes:
    """A stored account value as the worker keeps it for a young account with an open position
    (the agent decodes one per event and encodes it back)."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from domain.account import DictMemory, step
    from domain.events import ActivateAccount, PositionOpened
    from domain.tiers import default_catalog
    from tables.accounts import dump

    tier = next(t for t in default_catalog() if t.tier_id == "funded-100k")
    at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    memory = DictMemory()
    act = ActivateAccount("act-1", "fa_" + "0" * 32, "usr_1", "asm_1", tier, at)
    state = step(None, act, memory).state
    opened = PositionOpened(
        "t-1",
        act.account_id,
        "p-1",
        "EURUSD",
        "long",
        Decimal("2.5"),
        Decimal("1.085"),
        2_712_50,
        at,
    )
    outcome = step(state, opened, memory)
    assert outcome.state is not None
    return dumps(dump(outcome.state, [["t-1", "trades:0:1", outcome.facts]], {"trades:0": 1}))


async def run(
    bootstrap: str, topic: str, out_topic: str, count: int, with_json: bool = False
) -> dict[str, float | None]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=1000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    series: list[tuple[float, float]] = []
    stored = young_account_value()
    done = 0
    t_first: float | None = None
    last_commit = time.monotonic()
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for r in records:
                    if with_json:
                        event = loads_object(r.value)
                        value = json.loads(stored)
                        value["state"]["updated_at"] = event.get("occurred_at")
                        changelog = dumps(value)
                        snapshot = dumps({"event": event, "account": value["state"]})
                        await producer.send(out_topic, key=r.key, value=changelog)
                        await producer.send(out_topic, key=r.key, value=snapshot)
                    else:
                        await producer.send(out_topic, key=r.key, value=r.value)
                        await producer.send(out_topic, key=r.key, value=r.value)
                    done += 1
            now = time.monotonic()
            if done and t_first is None:
                t_first = now
            series.append((now, float(done)))
            if now - last_commit >= 1.0:
                await producer.flush()
                await consumer.commit()
                last_commit = now
        await producer.flush()
        await consumer.commit()
        t_end = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()
    overall = done / (t_end - t_first) if t_first is not None and t_end > t_first else None
    return {"steady_eps": steady_rate(series, float(count)), "overall_eps": overall, "events": done}


def main() -> int:
    bootstrap, topic, out_topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with_json = len(sys.argv) > 5 and sys.argv[5] == "json"
    print(json.dumps(asyncio.run(run(bootstrap, topic, out_topic, count, with_json))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
