"""`fundedflow tiers seed`: publish a tier catalog to the compacted `tiers` topic."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaProducer

from app.codec import dumps
from app.kafka_admin import bootstrap_list, prepare_topics
from app.settings import Settings, SettingsError
from app.topics import TIERS, TopicNames
from domain.tiers import InvalidTier, Tier, default_catalog, load_catalog


def read_catalog(path: Path | None) -> list[Tier]:
    if path is None:
        return default_catalog()
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read tier file {path}: {exc}") from None
    try:
        return load_catalog(text)
    except InvalidTier as exc:
        raise SettingsError(f"{path}: invalid tier catalog: {exc}") from None


async def seed_tiers(settings: Settings, path: Path | None = None) -> int:
    tiers = read_catalog(path)
    names = TopicNames(settings.topic_prefix)
    await prepare_topics(
        settings.kafka_bootstrap_servers,
        names,
        settings.topic_partitions,
        redelivery_window_hours=settings.redelivery_window_hours,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_list(settings.kafka_bootstrap_servers), acks="all"
    )
    await producer.start()
    try:
        for tier in tiers:
            await producer.send_and_wait(
                names.name(TIERS), key=tier.tier_id.encode(), value=dumps(tier.to_wire())
            )
    finally:
        await producer.stop()
    return len(tiers)
