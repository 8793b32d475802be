"""The tier catalog: validated by one agent, read in full by every worker.

Faust's GlobalTable is known to miss updates with several workers (faust-streaming #283), and
the catalog is a handful of records, so each worker reads the whole compacted `tiers` topic
with its own group-less consumer instead.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents.dead_letters import send_dead_letter
from app.codec import WireError, loads_object
from app.faust_app import FundedFlow
from app.kafka_admin import bootstrap_list, existing_partition_counts
from app.topics import TIERS
from domain.tiers import InvalidTier, Tier, parse_tier

log = logging.getLogger(__name__)


class TierCatalog:
    """Latest valid terms of every tier, kept current from the `tiers` topic."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._servers = bootstrap_list(bootstrap_servers)
        self._topic = topic
        self._tiers: dict[str, Tier] = {}
        self.ready = asyncio.Event()

    def get(self, tier_id: str) -> Tier | None:
        return self._tiers.get(tier_id)

    def __len__(self) -> int:
        return len(self._tiers)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone retires the tier for new activations
            if key is not None:
                self._tiers.pop(key.decode(errors="replace"), None)
            return
        try:
            tier = parse_tier(loads_object(value))
        except (WireError, InvalidTier):
            return  # the validating agent sends it to tiers.dlq; nothing to keep here
        self._tiers[tier.tier_id] = tier

    async def run(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._servers)
        await admin.start()
        try:
            count = 0
            while not count:
                count = (await existing_partition_counts(admin, [self._topic])).get(self._topic, 0)
                if not count:
                    await asyncio.sleep(0.5)
        finally:
            await admin.close()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            parts = range(count)
            tps = [TopicPartition(self._topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if end[tp] > 0}
            if not pending:
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for rec in records:
                        self.apply(rec.key, rec.value)
                        if tp in pending and rec.offset + 1 >= end[tp]:
                            pending.discard(tp)
                if not self.ready.is_set():
                    for tp in list(pending):
                        if await consumer.position(tp) >= end[tp]:
                            pending.discard(tp)
                    if not pending:
                        log.info("tier catalog loaded: %d tiers", len(self._tiers))
                        self.ready.set()
        finally:
            await consumer.stop()


def register(ff: FundedFlow) -> None:
    catalog = TierCatalog(ff.settings.kafka_bootstrap_servers, ff.names.name(TIERS))
    ff.extras["tier_catalog"] = catalog

    @ff.app.task  # type: ignore[untyped-decorator]
    async def tier_catalog_reader() -> None:
        while True:
            try:
                await catalog.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away: read the catalog again from the start
                log.exception("tier catalog reader failed; restarting in 2 s")
                await asyncio.sleep(2)

    @ff.app.agent(ff.topic(TIERS), name="tiers-validator")
    async def validate_tiers(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await validate_one(ff, event)


async def validate_one(ff: FundedFlow, event: faust.types.EventT[bytes]) -> None:
    """A tier that cannot be read goes to tiers.dlq (the catalog readers skip it); a tombstone
    retires a tier and is no dead letter."""
    if event.message.value is None:
        return
    try:
        parse_tier(loads_object(event.message.value))
    except (WireError, InvalidTier) as exc:
        await send_dead_letter(ff, TIERS, event, f"invalid_tier: {exc}")
