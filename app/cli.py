"""The `fundedflow` console script: worker, migrate, tiers seed, reconcile, explain."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from app.settings import Settings, SettingsError


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from app.worker import run_worker

    overrides: dict[str, object] = {}
    if args.web_port is not None:
        overrides["web_port"] = args.web_port
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    return run_worker(settings.with_overrides(**overrides), loglevel=args.loglevel)


async def _ensure_schema(database_url: str, schema: str) -> None:
    """Create the FUNDEDFLOW_DB_SCHEMA schema when it is missing.

    The sink and reconcile only set the search_path, so the schema must exist before the
    first migration. Existence is looked up first because `CREATE SCHEMA IF NOT EXISTS` still
    needs the CREATE right on the database, which a role that merely owns the schema may lack.
    """
    from sqlalchemy import text

    from app.db import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            found = await conn.scalar(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
            )
            if found is None:
                quoted = '"' + schema.replace('"', '""') + '"'
                await conn.execute(text(f"CREATE SCHEMA {quoted}"))
    finally:
        await engine.dispose()


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from app.db import downgrade, migrate

    # The same schema the sink writes to and reconcile reads from, or the migrated tables and
    # the ones the worker uses would be different tables.
    schema = settings.db_schema
    where = f" (schema {schema})" if schema else ""
    if args.down:
        downgrade(settings.database_url, args.revision or "base", schema=schema)
        print(f"database downgraded to {args.revision or 'base'}{where}")
    else:
        if schema:
            asyncio.run(_ensure_schema(settings.database_url, schema))
        migrate(settings.database_url, args.revision or "head", schema=schema)
        print(f"database migrated to {args.revision or 'head'}{where}")
    return 0


def _tiers_seed(args: argparse.Namespace, settings: Settings) -> int:
    from app.tiers_seed import seed_tiers

    count = asyncio.run(seed_tiers(settings, Path(args.file) if args.file else None))
    print(f"published {count} tiers to {settings.topic_prefix}tiers")
    return 0


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from app.reconcile import run

    return asyncio.run(run(settings))


async def _latest_breach(settings: Settings, account_id: str) -> tuple[str | None, bool]:
    """The JSON text of the account's latest breach (None without one), and whether the
    database knows the account at all (asked only when there is no breach)."""
    from app.breaches import account_known, read_breach_payloads
    from app.db import create_engine

    engine = create_engine(settings.database_url, schema=settings.db_schema, pool_size=1)
    try:
        async with engine.connect() as conn:
            payloads = await read_breach_payloads(conn, account_id, limit=1)
            if payloads:
                return payloads[0], True
            return None, await account_known(conn, account_id)
    finally:
        await engine.dispose()


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from app.explain import explain, no_breach, parse_fact

    try:
        payload, known = asyncio.run(_latest_breach(settings, args.account_id))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        # The database cannot be read: say so, not a traceback (as `reconcile` does).
        print(f"fundedflow explain: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    answer = no_breach(args.account_id, known) if payload is None else explain(parse_fact(payload))
    print(answer.text, file=sys.stderr if payload is None else sys.stdout)
    return answer.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fundedflow",
        description="FundedFlow: real-time funded-account backend (Faust streams).",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{worker,migrate,tiers,reconcile,explain}"
    )

    w = sub.add_parser("worker", help="run one stream worker with its HTTP server")
    w.add_argument("--web-port", type=int, default=None, help="HTTP port (default WEB_PORT)")
    w.add_argument("--data-dir", default=None, help="local table state (default DATA_DIR)")
    w.add_argument("--loglevel", default="info", help="log level (default info)")
    w.set_defaults(func=_worker)

    m = sub.add_parser(
        "migrate",
        help="apply the database migrations (Alembic), in FUNDEDFLOW_DB_SCHEMA when it is set",
    )
    m.add_argument("revision", nargs="?", default=None, help="target revision (default head)")
    m.add_argument("--down", action="store_true", help="downgrade instead (default to base)")
    m.set_defaults(func=_migrate)

    t = sub.add_parser("tiers", help="manage the tier catalog")
    tsub = t.add_subparsers(dest="tiers_command", required=True, metavar="{seed}")
    seed = tsub.add_parser("seed", help="publish the tier catalog (default: the bundled one)")
    seed.add_argument("file", nargs="?", default=None, help="JSON file with a list of tiers")
    seed.set_defaults(func=_tiers_seed)

    r = sub.add_parser(
        "reconcile",
        help="compare every account in the tables with its PostgreSQL rows "
        "(exit 1 when they differ)",
    )
    r.set_defaults(func=_reconcile)

    e = sub.add_parser(
        "explain",
        help="show an account's latest breach and check its evidence hash (exit 0 when it "
        "holds, 1 when there is no breach, 3 when the hash differs)",
    )
    e.add_argument("account_id", help="the funded account's id (fa_...)")
    e.set_defaults(func=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        result: int = args.func(args, settings)
    except SettingsError as exc:
        print(f"fundedflow: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
