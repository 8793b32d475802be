"""The broker's ceiling for a Python client: a plain aiokafka consume-and-produce loop.

Run as its own process (`python -m bench.ceiling TOPIC OUT_TOPIC COUNT`) so it has a core to
itself like a worker. It reads COUNT records of TOPIC from the start with a fresh group and,
for each one, sends two records to OUT_TOPIC: the Kafka traffic a worker makes per trade event
at the least (its table's changelog record and the account snapshot), with the workers'
producer settings (acks=all, linger 1 ms), committing offsets every second as Faust does. No
JSON parsing, no state, no rules. Prints one JSON line: events per second over the middle
80 % of the records and overall.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stats import steady_rate


async def run(bootstrap: str, topic: str, out_topic: str, count: int) -> dict[str, float | None]:
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
    done = 0
    t_first: float | None = None
    last_commit = time.monotonic()
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for records in batches.values():
                for r in records:
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
    print(json.dumps(asyncio.run(run(bootstrap, topic, out_topic, count))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
