from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import build_parser, main
from app.kafka_admin import PartitionMismatch, bootstrap_list, check_partitions
from app.settings import Settings, SettingsError
from app.topics import TopicNames


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.database_url == "postgresql+asyncpg://postgres@localhost:5432/fundedflow"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.stripe_api_key is None and s.stripe_api_base is None
    assert s.stripe_webhook_secret is None and s.jwt_secret is None
    assert (s.web_port, s.topic_partitions, s.rate_limit_per_minute) == (6066, 8, 60)
    assert s.data_dir == Path("./var")


def test_environment_overrides() -> None:
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "k1:1,k2:2",
            "WEB_PORT": "7000",
            "TOPIC_PARTITIONS": "4",
            "JWT_SECRET": "x",
            "STRIPE_API_KEY": "sk_test_1",
            "DATA_DIR": "/tmp/w1",
        }
    )
    assert s.web_port == 7000 and s.topic_partitions == 4 and s.payouts_enabled
    assert s.data_dir == Path("/tmp/w1")
    assert bootstrap_list(s.kafka_bootstrap_servers) == ["k1:1", "k2:2"]


@pytest.mark.parametrize(
    "name,value", [("WEB_PORT", "abc"), ("TOPIC_PARTITIONS", "0"), ("RATE_LIMIT_PER_MINUTE", "-1")]
)
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_worker_refuses_to_start_without_a_jwt_key() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env({}).require_worker_settings()
    Settings.from_env({"JWT_PUBLIC_KEY": "pem"}).require_worker_settings()


def test_worker_command_without_jwt_exits_with_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    assert main(["worker"]) == 2
    assert "JWT_SECRET" in capsys.readouterr().err


def test_cli_lists_its_commands() -> None:
    help_text = build_parser().format_help()
    for command in ("worker", "migrate", "tiers"):
        assert command in help_text


def test_partition_mismatch_names_topic_and_counts() -> None:
    names = TopicNames("p.")
    with pytest.raises(PartitionMismatch) as err:
        check_partitions({"p.trades": 4}, names, 8)
    assert "'p.trades' has 4 partitions but TOPIC_PARTITIONS is 8" in str(err.value)
    assert "co-partitioning" in str(err.value)


@pytest.mark.parametrize(
    "base",
    [
        "tiers",
        "assessment.completed",
        "trades",
        "fundedflow.account-commands",
        "fundedflow.payout-requests",
    ],
)
def test_every_consumed_input_topic_is_checked(base: str) -> None:
    names = TopicNames("p.")
    matching = {name: 8 for name in names.all_created()}
    check_partitions(matching, names, 8)  # the right counts everywhere pass
    with pytest.raises(PartitionMismatch) as err:
        check_partitions({**matching, f"p.{base}": 3}, names, 8)
    assert f"'p.{base}' has 3 partitions but TOPIC_PARTITIONS is 8" in str(err.value)


def test_changelog_mismatch_is_refused() -> None:
    names = TopicNames("p.")
    with pytest.raises(PartitionMismatch) as err:
        check_partitions({"p.fundedflow-accounts-changelog": 2}, names, 8)
    assert "'p.fundedflow-accounts-changelog' has 2 partitions" in str(err.value)


def test_topics_not_consumed_as_input_are_not_checked() -> None:
    # Fact and dead-letter topics are only written (the sink reads facts, keyed by account,
    # with no table): a downstream team creating one with its own count must not stop us.
    names = TopicNames("p.")
    check_partitions({"p.withdrawal.completed": 3, "p.trades.dlq": 1}, names, 8)


def test_topic_names_are_prefixed() -> None:
    names = TopicNames("x.").all_created()
    assert "x.trades" in names and "x.trades.dlq" in names and "x.withdrawal.failed" in names


def test_seed_file_with_a_repeated_tier_is_refused(tmp_path: Path) -> None:
    import json

    from app.tiers_seed import read_catalog
    from domain.tiers import default_catalog

    tier = default_catalog()[0].to_wire()
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps([tier, tier]))
    with pytest.raises(SettingsError, match="more than once"):
        read_catalog(path)
    path.write_text(json.dumps([tier]))
    assert [t.tier_id for t in read_catalog(path)] == [tier["tier_id"]]
    with pytest.raises(SettingsError, match="cannot read"):
        read_catalog(tmp_path / "missing.json")
