"""Database access: migrations and the async engine (one engine per event loop)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str, schema: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    return cfg


def migrate(database_url: str, revision: str = "head", schema: str | None = None) -> None:
    command.upgrade(alembic_config(database_url, schema), revision)


def downgrade(database_url: str, revision: str = "base", schema: str | None = None) -> None:
    command.downgrade(alembic_config(database_url, schema), revision)


def create_engine(database_url: str, schema: str | None = None, pool_size: int = 5) -> AsyncEngine:
    connect_args = {"server_settings": {"search_path": schema}} if schema else {}
    return create_async_engine(
        database_url, pool_size=pool_size, pool_pre_ping=True, connect_args=connect_args
    )
