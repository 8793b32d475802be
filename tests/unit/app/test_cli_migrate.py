"""`fundedflow migrate` works on the schema the sink and reconcile use (FUNDEDFLOW_DB_SCHEMA)."""

from __future__ import annotations

import pytest

import app.cli as cli
import app.db as db


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str | None]] = []
        self.ensured: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def migrate(url: str, revision: str = "head", schema: str | None = None) -> None:
            self.calls.append(("up", url, revision, schema))

        def downgrade(url: str, revision: str = "base", schema: str | None = None) -> None:
            self.calls.append(("down", url, revision, schema))

        async def ensure(url: str, schema: str) -> None:
            self.ensured.append(schema)

        monkeypatch.setattr(db, "migrate", migrate)
        monkeypatch.setattr(db, "downgrade", downgrade)
        monkeypatch.setattr(cli, "_ensure_schema", ensure, raising=False)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/ff")
    r = Recorder()
    r.install(monkeypatch)
    return r


def test_migrate_uses_the_configured_schema(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUNDEDFLOW_DB_SCHEMA", "tenant_a")
    assert cli.main(["migrate"]) == 0
    assert recorder.calls == [("up", "postgresql+asyncpg://u@db/ff", "head", "tenant_a")]
    assert recorder.ensured == ["tenant_a"]
    assert "migrated to head (schema tenant_a)" in capsys.readouterr().out


def test_downgrade_uses_the_configured_schema_and_creates_nothing(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUNDEDFLOW_DB_SCHEMA", "tenant_a")
    assert cli.main(["migrate", "--down", "0001"]) == 0
    assert recorder.calls == [("down", "postgresql+asyncpg://u@db/ff", "0001", "tenant_a")]
    assert recorder.ensured == []


def test_without_a_schema_the_server_default_is_used(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FUNDEDFLOW_DB_SCHEMA", raising=False)
    assert cli.main(["migrate"]) == 0
    assert recorder.calls == [("up", "postgresql+asyncpg://u@db/ff", "head", None)]
    assert recorder.ensured == []
    assert capsys.readouterr().out.strip() == "database migrated to head"
