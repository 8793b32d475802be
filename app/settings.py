"""Settings: one typed object, read once from the environment (CONTRACT.md section 1)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise SettingsError(f"{name} must be on or off, got {raw!r}")


def _opt(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    return raw or None


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "localhost:9092"
    database_url: str = "postgresql+asyncpg://postgres@localhost:5432/fundedflow"
    redis_url: str = "redis://localhost:6379/0"
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    web_port: int = 6066
    topic_partitions: int = 8
    rate_limit_per_minute: int = 60
    # How long an applied input id is remembered at least (a producer's redelivery of the same
    # event_id at a new offset changes nothing within it; Kafka's own redelivery is recognised
    # exactly whatever its age, by the input offsets in the account's value).
    redelivery_window_hours: int = 72
    # The account agent's batches: an input and at most this many minus one queued behind it.
    batch_max: int = 500
    # How long the producer waits to fill a request (Kafka's linger.ms): more records per produce
    # request under a paced load, at most this much later.
    producer_linger_ms: int = 1
    data_dir: Path = Path("./var")
    # Prefix for every topic name; empty in production, unique per test run.
    topic_prefix: str = ""
    # PostgreSQL schema (search_path) for every connection; None uses the server default.
    db_schema: str | None = None
    # Host name other workers use to reach this one's HTTP server.
    web_host: str = ""
    # The live risk feed's Redis fan-out (views/riskstream.py); off: streams poll the owner.
    risk_feed: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()
        return cls(
            kafka_bootstrap_servers=_opt(e, "KAFKA_BOOTSTRAP_SERVERS") or d.kafka_bootstrap_servers,
            database_url=_opt(e, "DATABASE_URL") or d.database_url,
            redis_url=_opt(e, "REDIS_URL") or d.redis_url,
            stripe_api_key=_opt(e, "STRIPE_API_KEY"),
            stripe_api_base=_opt(e, "STRIPE_API_BASE"),
            stripe_webhook_secret=_opt(e, "STRIPE_WEBHOOK_SECRET"),
            jwt_secret=_opt(e, "JWT_SECRET"),
            jwt_public_key=_opt(e, "JWT_PUBLIC_KEY"),
            web_port=_int(e, "WEB_PORT", d.web_port),
            topic_partitions=_int(e, "TOPIC_PARTITIONS", d.topic_partitions),
            rate_limit_per_minute=_int(e, "RATE_LIMIT_PER_MINUTE", d.rate_limit_per_minute),
            redelivery_window_hours=_int(
                e, "FUNDEDFLOW_REDELIVERY_WINDOW_HOURS", d.redelivery_window_hours
            ),
            batch_max=_int(e, "FUNDEDFLOW_BATCH_MAX", d.batch_max),
            producer_linger_ms=_int(
                e, "FUNDEDFLOW_PRODUCER_LINGER_MS", d.producer_linger_ms, minimum=0
            ),
            data_dir=Path(_opt(e, "DATA_DIR") or str(d.data_dir)),
            topic_prefix=_opt(e, "FUNDEDFLOW_TOPIC_PREFIX") or "",
            db_schema=_opt(e, "FUNDEDFLOW_DB_SCHEMA"),
            web_host=_opt(e, "WEB_HOST") or socket.gethostname(),
            risk_feed=_flag(e, "FUNDEDFLOW_RISK_FEED", d.risk_feed),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def require_worker_settings(self) -> None:
        """What a stream worker cannot start without (CONTRACT.md section 1)."""
        if not self.jwt_secret and not self.jwt_public_key:
            raise SettingsError(
                "JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256) must be set: "
                "the worker refuses to start without a key for bearer tokens"
            )

    @property
    def payouts_enabled(self) -> bool:
        return self.stripe_api_key is not None
