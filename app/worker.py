"""Starting one stream worker: settings check, topics, then the Faust worker."""

from __future__ import annotations

import asyncio
import logging
import sys

import faust

from app.faust_app import build_app
from app.kafka_admin import PartitionMismatch, prepare_topics
from app.settings import Settings, SettingsError
from app.topics import TopicNames

log = logging.getLogger(__name__)


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    try:
        settings.require_worker_settings()
    except SettingsError as exc:
        print(f"fundedflow worker: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            prepare_topics(
                settings.kafka_bootstrap_servers,
                TopicNames(settings.topic_prefix),
                settings.topic_partitions,
            )
        )
    except PartitionMismatch as exc:
        print(f"fundedflow worker: {exc}", file=sys.stderr)
        return 3
    if not settings.payouts_enabled:
        print(
            "fundedflow worker: STRIPE_API_KEY is not set: payouts are disabled on this worker "
            "(approved withdrawals wait until a worker with a key picks them up)",
            file=sys.stderr,
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ff = build_app(settings)
    worker = faust.Worker(ff.app, loglevel=loglevel)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process
