"""/health says 503 unless the worker is consuming with its tables recovered (CONTRACT §7)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from views.system import is_healthy


def ctx(rebalancing: bool = False, recovered: bool = True, stopping: bool = False) -> Any:
    completed = asyncio.Event()
    if recovered:
        completed.set()
    app = SimpleNamespace(
        rebalancing=rebalancing,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
        consumer=SimpleNamespace(should_stop=stopping),
    )
    return SimpleNamespace(ff=SimpleNamespace(app=app))


@pytest.mark.parametrize(
    ("state", "want"),
    [
        ({}, (True, "ok")),
        ({"rebalancing": True}, (False, "rebalancing")),
        ({"recovered": False}, (False, "recovering tables")),
        ({"stopping": True}, (False, "consumer stopped")),
        ({"rebalancing": True, "recovered": False}, (False, "rebalancing")),
    ],
)
def test_health_is_ok_only_when_consuming_with_tables_recovered(
    state: dict[str, bool], want: tuple[bool, str]
) -> None:
    assert is_healthy(ctx(**state)) == want
