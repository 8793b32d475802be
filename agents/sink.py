"""The PostgreSQL sink: the database follows the stream, never leads it.

A task of every worker consumes, in a consumer group of its own (`SinkConsumer`), the account
snapshots (`fundedflow.account-snapshots`, sent by the account agent after every applied change)
and the ten fact topics, in batches of up to 500 records or
200 ms, whichever comes first. Each batch is collapsed to the newest version of every row and
written in one transaction (`app.sink_db`): upserts that only take a newer `version`, and
`account_events` inserted once per `event_id`.

Nothing is lost to an outage: the offsets of a batch are committed only after its
transaction has. A failed write is logged,
counted, and tried again with the same batch after a back-off (0.5 s doubling to 5 s) until it
succeeds; the sink is delayed while the database is away and catches up by itself after.
A record that cannot be read at all (not JSON, fields missing) is logged, counted as
`invalid` and skipped: retrying it could never succeed.

Metrics, in `ff.extras["sink_metrics"]` (a plain dict, read by the HTTP /metrics route):

- `batches`: batches committed.
- `records`: Kafka records whose batch was committed.
- `rows`: rows sent to PostgreSQL in committed batches, after collapsing (an upsert that
  finds a newer row already there is counted too).
- `invalid`: records skipped because they could not be read.
- `errors`: failed write attempts (every retry that fails counts again).
- `failing`: 1 while the current batch is failing, else 0.
- `last_error`: text of the last failure, or None.
- `last_commit_at`: unix time of the last committed batch, or None before the first.
- `last_record_at`: Kafka timestamp (unix time) of the newest record committed, or None.
- `lag_seconds`: how far the database is behind the stream. At each commit: commit time minus
  the Kafka timestamp of the newest record committed. While a batch is failing, refreshed every
  second: now minus the Kafka timestamp of the oldest record not yet committed. None before the
  first batch.
- `pending_records`: records taken from the stream and not committed yet (the batch being
  written or retried).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from app.faust_app import FundedFlow
from app.kafka_admin import bootstrap_list
from app.sink_db import SNAPSHOT, Batch, SinkDatabase, SinkRecord, collapse
from app.topics import ACCOUNT_SNAPSHOTS, FACT_TOPICS

log = logging.getLogger(__name__)

MAX_BATCH = 500
BATCH_WITHIN = 0.2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
LAG_REFRESH_SECONDS = 1.0


class BatchStore(Protocol):
    async def write(self, batch: Batch) -> int: ...


def backoff(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failure in a row (1-based): 0.5, 1, 2, 4, 5, 5…"""
    return min(BACKOFF_MAX, BACKOFF_FIRST * float(2 ** min(max(0, attempt - 1), 16)))


def new_metrics() -> dict[str, Any]:
    return {
        "batches": 0,
        "records": 0,
        "rows": 0,
        "invalid": 0,
        "errors": 0,
        "failing": 0,
        "last_error": None,
        "last_commit_at": None,
        "last_record_at": None,
        "lag_seconds": None,
        "pending_records": 0,
    }


class SinkWriter:
    """Writes one batch at a time, retrying until it is committed, and keeps the metrics."""

    def __init__(
        self,
        store: BatchStore,
        metrics: dict[str, Any],
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self._oldest_pending: float | None = None

    def _lag_since(self, timestamp: float | None) -> float | None:
        if timestamp is None:
            return None
        return max(0.0, self.clock() - timestamp)

    def refresh_lag(self) -> None:
        """While a batch is failing, the lag grows with the age of its oldest record."""
        if self.metrics["failing"] and self._oldest_pending is not None:
            self.metrics["lag_seconds"] = self._lag_since(self._oldest_pending)

    async def write(self, records: Sequence[SinkRecord]) -> Batch:
        """Returns only once the batch is committed (or had nothing to write)."""
        m = self.metrics
        batch = collapse(records)
        for reason in batch.invalid:
            log.error("sink: skipping an unreadable record: %s", reason)
        m["invalid"] += len(batch.invalid)
        m["pending_records"] = len(records)
        self._oldest_pending = batch.oldest_timestamp
        failures = 0
        while True:
            try:
                rows = await self.store.write(batch)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = backoff(failures)
                m["errors"] += 1
                m["failing"] = 1
                m["last_error"] = f"{type(exc).__name__}: {exc}"
                self.refresh_lag()
                log.error(
                    "sink: database write failed (attempt %d, %d records waiting, lag %.1fs); "
                    "retrying the same batch in %.1fs: %s",
                    failures,
                    len(records),
                    m["lag_seconds"] or 0.0,
                    delay,
                    m["last_error"],
                )
                await self.sleep(delay)
        now = self.clock()
        if failures:
            log.warning(
                "sink: database write succeeded after %d failed attempts; catching up", failures
            )
        m["batches"] += 1
        m["records"] += len(records)
        m["rows"] += rows
        m["failing"] = 0
        m["pending_records"] = 0
        m["last_commit_at"] = now
        if batch.newest_timestamp is not None:
            m["last_record_at"] = batch.newest_timestamp
            m["lag_seconds"] = max(0.0, now - batch.newest_timestamp)
        self._oldest_pending = None
        return batch


def topic_kinds(ff: FundedFlow) -> dict[str, str]:
    """Full topic name (prefix applied) to the record kind the sink reads from it."""
    kinds = {ff.names.name(ACCOUNT_SNAPSHOTS): SNAPSHOT}
    kinds.update({ff.names.name(t): t for t in FACT_TOPICS})
    return kinds


class SinkConsumer:
    """Reads the sink's topics with a Kafka consumer of its own group and feeds `SinkWriter`.

    Why not a Faust agent on the worker's consumer: Faust hands the records one worker fetched
    to its agents one at a time, in fetch order (`faust/transport/consumer.py`,
    `_drain_messages`). While the account agent works through a backlog of trades, the
    snapshots and facts it produced wait behind trades fetched before them, so the database
    fell behind by as long as the backlog took to work off (a minute after a 100,000-event
    burst, docs/performance.md). With its own group the sink reads its records as they arrive,
    and the stream consumer no longer fetches the sink's eleven topics.

    The guarantees are unchanged: offsets are committed only after the batch's transaction
    has; a rebalance in between makes the new owner read the batch again, which the upserts
    (newer versions only) and `ON CONFLICT DO NOTHING` make harmless.
    """

    def __init__(self, ff: FundedFlow, writer: SinkWriter, kinds: dict[str, str]) -> None:
        self.ff = ff
        self.writer = writer
        self.kinds = kinds
        self.consumer: AIOKafkaConsumer | None = None

    def _new_consumer(self) -> AIOKafkaConsumer:
        conf = self.ff.app.conf
        return AIOKafkaConsumer(
            *self.kinds,
            bootstrap_servers=bootstrap_list(self.ff.settings.kafka_bootstrap_servers),
            group_id=self.ff.names.sink_group,
            client_id=f"{self.ff.names.sink_group}-{id(self):x}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_BATCH,
            # The broker holds a fetch until it has this much or the wait is over: a batch is
            # up to 200 ms anyway, and fetching every record as it comes cost the worker about
            # a fifth of its throughput in fetch round trips (bench/, paired runs).
            fetch_min_bytes=256 << 10,
            fetch_max_wait_ms=100,
            session_timeout_ms=int(conf.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(conf.broker_heartbeat_interval * 1000),
            # A database outage keeps the loop in `SinkWriter.write` without polling; past
            # this the consumer leaves its group and, on return, reads the batch again.
            max_poll_interval_ms=600_000,
        )

    async def take(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
        """Up to MAX_BATCH records, or what came within BATCH_WITHIN of the first one."""
        loop = asyncio.get_running_loop()
        batch: list[ConsumerRecord[bytes, bytes]] = []
        deadline: float | None = None
        while len(batch) < MAX_BATCH:
            wait = 1.0 if deadline is None else deadline - loop.time()
            if wait <= 0:
                break
            got = await consumer.getmany(
                timeout_ms=int(wait * 1000), max_records=MAX_BATCH - len(batch)
            )
            for records in got.values():
                batch.extend(records)
            if not batch:
                return batch
            if deadline is None:
                deadline = loop.time() + BATCH_WITHIN
        return batch

    async def commit(
        self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took some partitions while the batch was written: their new owner
            # reads those records again (harmless). Keep what is still ours moving.
            mine = consumer.assignment()
            kept = {tp: o for tp, o in offsets.items() if tp in mine}
            log.warning(
                "sink: commit after a rebalance (%s); committing %d of %d",
                exc,
                len(kept),
                len(offsets),
            )
            if kept:
                try:
                    await consumer.commit(kept)
                except (CommitFailedError, IllegalStateError) as again:
                    log.warning(
                        "sink: commit failed again, the batch will be read again: %s", again
                    )

    async def run(self) -> None:
        while True:
            consumer = self.consumer = self._new_consumer()
            try:
                await consumer.start()
                while True:
                    records = await self.take(consumer)
                    if not records:
                        continue
                    await self.writer.write(
                        [
                            SinkRecord(
                                self.kinds[r.topic],
                                r.value,
                                r.timestamp / 1000.0 if r.timestamp is not None else None,
                            )
                            for r in records
                        ]
                    )
                    await self.commit(consumer, records)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                # Uncommitted records are read again by whoever owns them next.
                log.error("sink: Kafka consumer failed, starting a new one in 1s: %r", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
                self.consumer = None


def register(ff: FundedFlow) -> None:
    kinds = topic_kinds(ff)
    metrics = ff.extras["sink_metrics"] = new_metrics()
    store = SinkDatabase(ff.settings.database_url, ff.settings.db_schema)
    writer = SinkWriter(store, metrics)
    ff.extras["sink_writer"] = writer
    reader = SinkConsumer(ff, writer, kinds)
    running: list[asyncio.Task[None]] = []

    @ff.app.task  # type: ignore[untyped-decorator]
    async def sink() -> None:
        task = asyncio.ensure_future(reader.run())
        running.append(task)
        await asyncio.gather(task, return_exceptions=True)

    async def stop_sink(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # The batch being written is abandoned uncommitted (read again after the restart);
        # only then is the pool closed under it.
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await store.close()

    ff.app.on_before_shutdown.connect(stop_sink)  # type: ignore[arg-type]

    @ff.app.timer(LAG_REFRESH_SECONDS, name="sink_lag")  # type: ignore[untyped-decorator]
    async def sink_lag() -> None:
        writer.refresh_lag()
