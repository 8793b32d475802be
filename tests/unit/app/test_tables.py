"""The account tables' RocksDB options: applied ids expire after the redelivery window."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.stores.rocksdb import RocksDBOptions

from app.settings import Settings
from app.topics import ACCOUNTS_TABLE, APPLIED_IDS_TABLE, WITHDRAWAL_ARCHIVE_TABLE
from tables import accounts


class _App:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, Any]] = {}

    def Table(self, name: str, **kw: Any) -> str:
        self.tables[name] = kw
        return name


def test_only_the_applied_ids_expire_and_after_the_configured_window() -> None:
    app = _App()
    settings = Settings.from_env({"FUNDEDFLOW_REDELIVERY_WINDOW_HOURS": "5"})
    ff = SimpleNamespace(app=app, settings=settings, extras={})
    accounts.register(ff)  # type: ignore[arg-type]
    assert app.tables[APPLIED_IDS_TABLE]["options"]["ttl"] == 5 * 3600
    for name in (ACCOUNTS_TABLE, WITHDRAWAL_ARCHIVE_TABLE):
        assert "ttl" not in app.tables[name]["options"], name
    assert Settings.from_env({}).redelivery_window_hours == 72


def test_a_store_opened_with_the_window_keeps_what_it_is_given(tmp_path: Path) -> None:
    """Faust opens the applied-ids database with RocksDB's TTL mode (rocksdict), which stores a
    write time beside each value: reads give the value back unchanged."""
    options = RocksDBOptions(**accounts.rocksdb_options(ttl=3600), use_rocksdict=True)
    db = options.open(tmp_path / "ids")
    try:
        db[b"fa_1/t-1"] = b'{"v":3}'
        assert db[b"fa_1/t-1"] == b'{"v":3}'
        assert db.get(b"fa_1/t-2") is None
    finally:
        db.close()
