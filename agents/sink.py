"""The PostgreSQL sink: the database follows the stream, never leads it.

One agent consumes the account snapshots (`fundedflow.account-snapshots`, sent by the account
agent after every applied change) and the ten fact topics, in batches of up to 500 records or
200 ms, whichever comes first. Each batch is collapsed to the newest version of every row and
written in one transaction (`app.sink_db`): upserts that only take a newer `version`, and
`account_events` inserted once per `event_id`.

Nothing is lost to an outage: the events of a batch are acknowledged only after its
transaction has committed, so Faust commits their offsets only then. A failed write is logged,
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
from typing import Any, Protocol, cast

import faust

from app.faust_app import FundedFlow
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


def register(ff: FundedFlow) -> None:
    kinds = topic_kinds(ff)
    channel = ff.app.topic(*kinds, partitions=ff.settings.topic_partitions)
    metrics = ff.extras["sink_metrics"] = new_metrics()
    store = SinkDatabase(ff.settings.database_url, ff.settings.db_schema)
    writer = SinkWriter(store, metrics)
    ff.extras["sink_writer"] = writer

    @ff.app.agent(channel, name="sink")
    async def sink(stream: faust.StreamT[bytes]) -> None:
        concrete = cast("faust.Stream[bytes]", stream)
        # noack_take: the events are acknowledged here, after the commit, and never by Faust
        # on the way out of a batch (a stop during an outage must not commit offsets).
        async for taken in concrete.noack_take(MAX_BATCH, within=BATCH_WITHIN):
            events = cast("list[faust.types.EventT[bytes]]", taken)
            await writer.write(
                [
                    SinkRecord(kinds[e.message.topic], e.message.value, e.message.timestamp or None)
                    for e in events
                ]
            )
            for e in events:
                await stream.ack(e)

    async def close_pool(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent after the streams are done: no batch is being written any more.
        await store.close()

    ff.app.on_before_shutdown.connect(close_pool)  # type: ignore[arg-type]

    @ff.app.timer(LAG_REFRESH_SECONDS, name="sink_lag")  # type: ignore[untyped-decorator]
    async def sink_lag() -> None:
        writer.refresh_lag()
