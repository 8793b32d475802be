"""Topic creation and the co-partitioning check made before a worker starts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.topics import (
    APPLIED_IDS_TABLE,
    INPUT_TOPICS,
    TABLE_SOURCE_TOPICS,
    TABLES,
    TIERS,
    TopicNames,
)


class PartitionMismatch(RuntimeError):
    """A topic FundedFlow consumes exists with another partition count."""


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


def checked_topics(names: TopicNames) -> list[str]:
    """Every topic whose partition count must equal TOPIC_PARTITIONS, in checking order.

    The table's changelog and its sources break co-partitioning when they differ. The other
    input topics (`tiers`, `assessment.completed`) feed no table, but FundedFlow declares every
    topic it consumes with TOPIC_PARTITIONS, and one that differs means the deployment is not
    the one configured (a smaller count also caps how many workers share that stream): better
    a refusal at start naming it than a worker quietly running a layout nobody chose.
    """
    bases = dict.fromkeys([*TABLE_SOURCE_TOPICS, *INPUT_TOPICS])  # ordered, no repeats
    return [*(names.name(b) for b in bases), *(names.changelog(t) for t in TABLES)]


def check_partitions(counts: Mapping[str, int], names: TopicNames, expected: int) -> None:
    table_fed = {names.name(b) for b in TABLE_SOURCE_TOPICS} | {names.changelog(t) for t in TABLES}
    for topic in checked_topics(names):
        found = counts.get(topic)
        if found is not None and found != expected:
            why = (
                "the accounts table and every topic feeding it must have the same count "
                "(co-partitioning)"
                if topic in table_fed
                else "every input topic must have the deployment's partition count"
            )
            raise PartitionMismatch(
                f"topic {topic!r} has {found} partitions but TOPIC_PARTITIONS is {expected}: "
                f"{why}; recreate the topic or set TOPIC_PARTITIONS to match"
            )


async def prepare_topics(
    bootstrap_servers: str,
    names: TopicNames,
    partitions: int,
    replication_factor: int = 1,
    redelivery_window_hours: int = 72,
) -> None:
    """Create every FundedFlow topic that is missing; refuse mismatched input topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_list(bootstrap_servers))
    await admin.start()
    try:
        all_topics = names.all_created()
        counts = await existing_partition_counts(admin, all_topics)
        check_partitions(counts, names, partitions)
        missing = [t for t in all_topics if t not in counts]
        configs: dict[str, dict[str, str]] = {
            names.name(TIERS): {"cleanup.policy": "compact"},
            # The changelog gets a full account value per applied event. Kafka never compacts
            # the active segment, and with its 1 GiB default one segment held every record of
            # a benchmark run: a worker with an empty data dir replayed all of them. Smaller
            # segments let the cleaner keep about one value per account.
            **{
                names.changelog(table): {
                    "cleanup.policy": "compact",
                    "segment.bytes": str(64 << 20),
                    "segment.ms": str(3_600_000),
                }
                for table in TABLES
            },
        }
        # Applied ids are one key each and never overwritten: compaction alone keeps them all.
        # They are kept for the redelivery window (tables/accounts.py: the same as RocksDB's
        # TTL), so a worker that recovers the table reads at most a window of them.
        configs[names.changelog(APPLIED_IDS_TABLE)].update(
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(redelivery_window_hours * 3_600_000),
            }
        )
        new = [
            NewTopic(t, partitions, replication_factor, topic_configs=configs.get(t, {}))
            for t in missing
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them at the same moment
    finally:
        await admin.close()
