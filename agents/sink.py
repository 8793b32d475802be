"""The PostgreSQL sink: the database follows the stream, never leads it.

A task of every worker consumes, in a consumer group of its own (`SinkConsumer`), the account
snapshots (`fundedflow.account-snapshots`, sent by the account agent after every applied change)
and every fact topic (`app.topics.FACT_TOPICS`), in batches of up to 500 records or
200 ms, whichever comes first. Each batch is collapsed to the newest version of every row and
written in one transaction (`app.sink_db`): upserts that only take a newer `version`, and
`account_events` inserted once per `event_id`.

Nothing is lost to an outage: the offsets of a batch are committed only after its
transaction has. A failed write is logged,
counted, and tried again with the same batch after a back-off (0.5 s doubling to 5 s) until it
succeeds; the sink is delayed while the database is away and catches up by itself after.
A record that cannot be read at all (not JSON, fields missing) is logged, counted as
`invalid` and skipped: retrying it could never succeed.

Nor can one record stall the sink. A record PostgreSQL refuses for its content (SQLSTATE class
22 or 23: a NUL in text or jsonb, a numeric overflow, a check constraint; `refused_reason`) would
be refused again on every retry, so it is set aside instead: the batch is split in halves, each
written in its own transaction, and a half that is refused is split again until the refused
records stand alone (about 2·log2(n) transactions for one bad record in n). The unit set aside
is the Kafka record, not the collapsed row: each half is collapsed from its own records, so the
rows of a set-aside snapshot are replaced by those of the newest good snapshot of the batch
(an account's older snapshot lands when its newest one is refused). The halves that commit
separately are harmless for the same reason a replay is: only newer versions are taken, and a
snapshot carries the account row its withdrawal rows refer to. Every set-aside record is sent
to `sink.dlq` with its original key and bytes and, in headers, the `reason` and its
`source-topic`, `source-partition` and `source-offset`; it is logged and counted in
`set_aside`. The offsets are committed only after both the database transaction(s) and the
sink.dlq sends have succeeded: a crash in between reads the batch again, which rewrites the good
rows harmlessly and may send a set-aside record to sink.dlq a second time (a consumer of
sink.dlq should expect repeats, by source topic, partition and offset). A sink.dlq that cannot be
reached is an outage like the database's: the send is retried with the same back-off, and no
record is dropped. An error that is not about the content (connection refused or lost, a
timeout, an administrator's shutdown, a missing table) still retries the whole batch.

Metrics, in `ff.extras["sink_metrics"]` (a plain dict, read by the HTTP /metrics route):

- `batches`: batches committed.
- `records`: Kafka records whose batch was committed.
- `rows`: rows sent to PostgreSQL in committed batches, after collapsing (an upsert that
  finds a newer row already there is counted too).
- `invalid`: records skipped because they could not be read.
- `set_aside`: records the database refused for their content, sent to sink.dlq (counted
  once the send succeeded; they are part of `records` too).
- `errors`: failed attempts to write a batch or to send its set-aside records to sink.dlq
  (every retry that fails counts again; a refused record is not an error).
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
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from app.faust_app import FundedFlow
from app.kafka_admin import bootstrap_list
from app.sink_db import SNAPSHOT, Batch, SinkDatabase, SinkRecord, collapse, refused_reason
from app.topics import ACCOUNT_SNAPSHOTS, FACT_TOPICS, SINK_DLQ

log = logging.getLogger(__name__)

MAX_BATCH = 500
BATCH_WITHIN = 0.2
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
LAG_REFRESH_SECONDS = 1.0
# How long one send of set-aside records to sink.dlq may take before it counts as failed.
DLQ_SEND_TIMEOUT_SECONDS = 15.0


class BatchStore(Protocol):
    async def write(self, batch: Batch) -> int: ...


@dataclass(frozen=True)
class SetAside:
    """A record the database refused, and why."""

    record: SinkRecord
    reason: str


class SetAsideSink(Protocol):
    async def send(self, items: Sequence[SetAside]) -> None:
        """Returns once every item is stored; raises (and is retried) otherwise."""
        ...


def backoff(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failure in a row (1-based): 0.5, 1, 2, 4, 5, 5…"""
    return min(BACKOFF_MAX, BACKOFF_FIRST * float(2 ** min(max(0, attempt - 1), 16)))


def new_metrics() -> dict[str, Any]:
    return {
        "batches": 0,
        "records": 0,
        "rows": 0,
        "invalid": 0,
        "set_aside": 0,
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
        set_aside: SetAsideSink,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.set_aside = set_aside
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

    async def _write_apart(
        self, records: Sequence[SinkRecord], batch: Batch | None = None
    ) -> tuple[int, list[SetAside]]:
        """Writes the records' rows, setting aside the records the database refuses.

        Returns the rows sent in committed transactions and the refused records. An error that
        is not about the content is raised: the caller retries the whole batch.
        """
        if batch is None:
            batch = collapse(records)  # its unreadable records were counted with the batch's
        try:
            return await self.store.write(batch), []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = refused_reason(exc)
            if reason is None:
                raise
            if len(records) == 1:
                return 0, [SetAside(records[0], reason)]
            log.warning(
                "sink: the database refused a group of %d records (%s); writing it in halves "
                "to find the records it refuses",
                len(records),
                reason,
            )
        half = len(records) // 2
        rows_first, refused_first = await self._write_apart(records[:half])
        rows_second, refused_second = await self._write_apart(records[half:])
        return rows_first + rows_second, refused_first + refused_second

    async def write(self, records: Sequence[SinkRecord]) -> Batch:
        """Returns only once the batch is committed (or had nothing to write) and its refused
        records, if any, are on sink.dlq."""
        m = self.metrics
        records = list(records)
        batch = collapse(records)
        for reason in batch.invalid:
            log.error("sink: skipping an unreadable record: %s", reason)
        m["invalid"] += len(batch.invalid)
        m["pending_records"] = len(records)
        self._oldest_pending = batch.oldest_timestamp
        failures = 0
        # Kept across retries once the database part is done: a sink.dlq outage then retries
        # only the send.
        written: tuple[int, list[SetAside]] | None = None
        while True:
            try:
                if written is None:
                    written = await self._write_apart(records, batch)
                rows, refused = written
                if refused:
                    await self.set_aside.send(refused)
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
                what = (
                    "database write failed"
                    if written is None
                    else f"sending {len(written[1])} set-aside records to sink.dlq failed"
                )
                log.error(
                    "sink: %s (attempt %d, %d records waiting, lag %.1fs); "
                    "retrying the same batch in %.1fs: %s",
                    what,
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
        for item in refused:
            r = item.record
            log.error(
                "sink: set aside %s[%s]@%s on sink.dlq, the database refused it: %s",
                r.topic or r.kind,
                r.partition,
                r.offset,
                item.reason,
            )
        m["set_aside"] += len(refused)
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


class SinkDeadLetters:
    """Sends set-aside records to sink.dlq with a producer of the sink's own (acks=all).

    The sink reads with plain aiokafka outside Faust's stream, so it does not borrow the Faust
    app's producer: the sends are awaited here, bounded by DLQ_SEND_TIMEOUT_SECONDS, and a send
    that fails or times out raises, which `SinkWriter` retries like a database outage. A send
    that timed out may still have been stored: the retry then stores it twice (see the module
    docstring: repeats on sink.dlq are possible).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        client_id: str,
        timeout: float = DLQ_SEND_TIMEOUT_SECONDS,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.client_id = client_id
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    async def _get_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=bootstrap_list(self.bootstrap_servers),
                client_id=self.client_id,
                acks="all",
                request_timeout_ms=int(self.timeout * 1000),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    @staticmethod
    def headers(item: SetAside) -> list[tuple[str, bytes]]:
        r = item.record
        return [
            ("reason", item.reason.encode()),
            ("source-topic", (r.topic or r.kind).encode()),
            ("source-partition", str(r.partition).encode()),
            ("source-offset", str(r.offset).encode()),
        ]

    async def _send(self, items: Sequence[SetAside]) -> None:
        producer = await self._get_producer()
        sent = [
            await producer.send(
                self.topic,
                key=item.record.key,
                value=item.record.value if item.record.value is not None else b"",
                headers=self.headers(item),
            )
            for item in items
        ]
        await asyncio.gather(*sent)

    async def send(self, items: Sequence[SetAside]) -> None:
        try:
            await asyncio.wait_for(self._send(items), self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"sink.dlq did not take {len(items)} records within {self.timeout:.0f}s"
            ) from None

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # Whatever it still holds was never confirmed: the batch was not committed and is
            # read again after the restart.
            try:
                await asyncio.wait_for(producer.stop(), self.timeout)
            except TimeoutError:
                log.warning("sink: the sink.dlq producer did not stop in time")


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
    and the stream consumer no longer fetches the sink's topics.

    The guarantees are unchanged: offsets are committed only after the batch's transaction
    has and its set-aside records are on sink.dlq; a rebalance in between makes the new owner
    read the batch again, which the upserts (newer versions only) and `ON CONFLICT DO NOTHING`
    make harmless.
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
                                topic=r.topic,
                                partition=r.partition,
                                offset=r.offset,
                                key=r.key,
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
    dead_letters = SinkDeadLetters(
        ff.settings.kafka_bootstrap_servers,
        ff.names.name(SINK_DLQ),
        client_id=f"{ff.names.sink_group}-dlq",
    )
    writer = SinkWriter(store, metrics, dead_letters)
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
        await dead_letters.close()

    ff.app.on_before_shutdown.connect(stop_sink)  # type: ignore[arg-type]

    @ff.app.timer(LAG_REFRESH_SECONDS, name="sink_lag")  # type: ignore[untyped-decorator]
    async def sink_lag() -> None:
        writer.refresh_lag()
