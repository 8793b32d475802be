"""The Faust application: topics, tables and agents wired for one deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from app.kafka_admin import bootstrap_list
from app.settings import Settings
from app.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNT_SNAPSHOTS,
    FACT_TOPICS,
    INPUT_TOPICS,
    PAYOUT_REQUESTS,
    TIERS,
    TRADES,
    TopicNames,
    dlq,
)


@dataclass
class FundedFlow:
    """Everything the agents and views share inside one worker."""

    app: faust.App
    settings: Settings
    names: TopicNames
    topics: dict[str, faust.types.TopicT] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def topic(self, base: str) -> faust.types.TopicT:
        return self.topics[base]


def _broker_url(servers: str) -> str:
    return ";".join(f"kafka://{s}" for s in bootstrap_list(servers))


def create_faust_app(settings: Settings) -> faust.App:
    return faust.App(
        f"{settings.topic_prefix}fundedflow",
        broker=_broker_url(settings.kafka_bootstrap_servers),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        table_standby_replicas=1,
        key_serializer="raw",
        value_serializer="raw",
        web_port=settings.web_port,
        web_host=settings.web_host or None,
        web_enabled=True,
        # Faust's built-in pages need no token and would show table contents and the cluster
        # layout to anyone: only FundedFlow's own routes are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        consumer_auto_offset_reset="earliest",
        # Facts are sent at once (force=True) and the producer is flushed before every commit,
        # so a short commit interval only bounds how much is re-read after a crash.
        broker_commit_interval=1.0,
        producer_acks=-1,
        # A worker that died is noticed after 10 s instead of Faust's 60 s default, so its
        # partitions move to the others quickly (heartbeats come from the consumer's own
        # thread, so a busy event loop does not get a worker expelled).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        producer_linger_ms=1,
        # The reply topic of agent.ask() is never used; keep Faust from creating it per worker.
        reply_create_topic=False,
    )


def build_app(settings: Settings) -> FundedFlow:
    import views
    from agents import accounts, activation, payouts, sink, tiers
    from app import durable
    from tables import accounts as account_tables

    durable.install()  # before any agent runs: no commit passes an undelivered record
    names = TopicNames(settings.topic_prefix)
    app = create_faust_app(settings)
    ff = FundedFlow(app=app, settings=settings, names=names)
    for base in (
        *INPUT_TOPICS,
        *(dlq(t) for t in INPUT_TOPICS),
        *FACT_TOPICS,
        PAYOUT_REQUESTS,
        ACCOUNT_SNAPSHOTS,
    ):
        ff.topics[base] = app.topic(
            names.name(base),
            partitions=settings.topic_partitions,
            compacting=True if base == TIERS else None,
        )
    # One channel over both topics that change an account: one stream, one writer.
    ff.topics["account-inputs"] = app.topic(
        names.name(TRADES), names.name(ACCOUNT_COMMANDS), partitions=settings.topic_partitions
    )
    account_tables.register(ff)
    tiers.register(ff)
    activation.register(ff)
    accounts.register(ff)
    payouts.register(ff)
    sink.register(ff)
    views.register(ff)
    return ff
