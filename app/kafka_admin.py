"""Topic creation and the co-partitioning check made before a worker starts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.topics import ACCOUNTS_TABLE, TABLE_SOURCE_TOPICS, TIERS, TopicNames


class PartitionMismatch(RuntimeError):
    """A topic that feeds a table exists with another partition count."""


def bootstrap_list(servers: str) -> list[str]:
    return [s.strip() for s in servers.replace(";", ",").split(",") if s.strip()]


async def existing_partition_counts(
    admin: AIOKafkaAdminClient, topics: Iterable[str]
) -> dict[str, int]:
    wanted = list(topics)
    present = set(await admin.list_topics())
    names = [t for t in wanted if t in present]
    if not names:
        return {}
    counts: dict[str, int] = {}
    for desc in await admin.describe_topics(names):
        d: Mapping[str, Any] = desc
        counts[str(d["topic"])] = len(d["partitions"])
    return counts


def check_partitions(counts: Mapping[str, int], names: TopicNames, expected: int) -> None:
    for topic in [*(names.name(b) for b in TABLE_SOURCE_TOPICS), names.changelog(ACCOUNTS_TABLE)]:
        found = counts.get(topic)
        if found is not None and found != expected:
            raise PartitionMismatch(
                f"topic {topic!r} has {found} partitions but TOPIC_PARTITIONS is {expected}: "
                "the accounts table and every topic feeding it must have the same count "
                "(co-partitioning); recreate the topic or set TOPIC_PARTITIONS to match"
            )


async def prepare_topics(
    bootstrap_servers: str,
    names: TopicNames,
    partitions: int,
    replication_factor: int = 1,
) -> None:
    """Create every FundedFlow topic that is missing; refuse mismatched table sources."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap_servers))
    await admin.start()
    try:
        all_topics = names.all_created()
        counts = await existing_partition_counts(admin, all_topics)
        check_partitions(counts, names, partitions)
        missing = [t for t in all_topics if t not in counts]
        compacted = {names.name(TIERS), names.changelog(ACCOUNTS_TABLE)}
        new = [
            NewTopic(
                t,
                partitions,
                replication_factor,
                topic_configs={"cleanup.policy": "compact"} if t in compacted else {},
            )
            for t in missing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them at the same moment
    finally:
        await admin.close()
