"""The Faust application and what the agents and views share (`FundedFlow`).

This module defines them and imports no agent or view: the wiring is done in one place, the
worker's start (`app/worker.py`: `build_app`), so agents and views depend on the app and never
the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from app.kafka_admin import bootstrap_list
from app.settings import Settings
from app.topics import TopicNames


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
        producer_linger_ms=settings.producer_linger_ms,
        # The reply topic of agent.ask() is never used; keep Faust from creating it per worker.
        reply_create_topic=False,
    )
