"""`GET /funded-accounts/{id}/breaches` end to end: two real workers, a breach made by the
stream and others written into `account_events` as the sink writes them; every answer asked
on both workers (one of them forwards to the owner)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.breaches import MAX_BREACHES
from tests.integration import pair
from tests.integration import streams as s
from tests.integration.breach_support import (
    explain_cli,
    insert_facts,
    sealed_evidence,
    violation,
)
from tests.integration.conftest import Services, pg_dsn
from tests.integration.harness import Kafka, Worker, wait_until
from tests.integration.http_support import ADMIN, Http, auth, token
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

BOTH = (0, 1)
OWNER = auth("usr_1")
OTHER = auth("usr_2")


@pytest.fixture(scope="module")
def prefix() -> str:
    return s.uid("brk") + "."


@pytest.fixture(scope="module")
def workers(
    services: Services,
    prefix: str,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Worker]]:
    yield from pair.started(
        services, prefix, module_schema, double, tmp_path_factory.mktemp("breaches")
    )


@pytest.fixture
async def http(workers: list[Worker]) -> AsyncIterator[Http]:
    async with Http(workers) as h:
        await h.wait_healthy()
        yield h


@pytest.fixture
async def kafka(services: Services, prefix: str, workers: list[Worker]) -> AsyncIterator[Kafka]:
    async with pair.kafka(services, prefix, workers) as k:
        yield k


async def new_account(kafka: Kafka, http: Http, user: str = "usr_1") -> str:
    asm = s.uid("asm")
    await kafka.send("assessment.completed", asm, s.assessment(asm, user=user))
    acct = s.account_of(asm)
    await http.account_when(0, acct, auth(user), lambda a: True, timeout=90)
    return acct


async def breach_by_trades(kafka: Kafka, http: Http, acct: str) -> str:
    """A drawdown breach made by the stream: a loss of 20,000.00 on 100,000.00 (limit 10 %).
    Returns the trigger's event id."""
    update = s.updated(acct, "p-1", "-20000.00")
    await kafka.send_many(
        [("trades", acct, s.opened(acct, "p-1", "1000.00")), ("trades", acct, update)]
    )
    await http.account_when(0, acct, OWNER, lambda a: a["status"] == "closed")
    return str(update["event_id"])


async def breaches_when(
    http: Http, acct: str, count: int, headers: dict[str, str] = OWNER
) -> list[dict[str, Any]]:
    """The breaches once the sink has written `count` of them."""

    async def probe() -> list[dict[str, Any]] | None:
        ans = await http.get(0, f"/funded-accounts/{acct}/breaches", headers)
        assert ans.status == 200, ans.body
        found = ans.body["breaches"]
        return found if len(found) >= count else None

    return list(await wait_until(probe, timeout=30, what=f"{count} breaches of {acct}"))


async def test_breaches_newest_first_as_published_for_the_owner_and_admins_only(
    http: Http, kafka: Kafka, services: Services, module_schema: str
) -> None:
    acct = await new_account(kafka, http)
    trigger_id = await breach_by_trades(kafka, http, acct)
    [streamed] = await breaches_when(http, acct, 1)
    # Exactly the fact on the topic (jsonb keeps no key order; the values are the same).
    published = [
        f for f in await kafka.facts("rules.violation-detected") if f["account_id"] == acct
    ]
    assert published == [streamed]
    assert streamed["rule"] == "drawdown"
    assert streamed["trigger_event_id"] == trigger_id
    assert (streamed["user_id"], streamed["type"]) == ("usr_1", "rules.violation-detected")

    # Others written as the sink writes them: one older, two at one instant (the larger
    # event_id first), and facts that are not this account's breaches.
    old = violation(
        acct,
        "usr_1",
        datetime(2026, 1, 1, tzinfo=UTC),
        "b-old",
        evidence=sealed_evidence("t-old", acct),
    )
    tie_a = violation(acct, "usr_1", datetime(2027, 1, 1, tzinfo=UTC), "b-tie-a")
    tie_b = violation(
        acct,
        "usr_1",
        datetime(2027, 1, 1, tzinfo=UTC),
        "b-tie-b",
        evidence=sealed_evidence("t-tie", acct),
    )
    unrelated = [
        violation(
            acct, "usr_1", datetime(2028, 1, 1, tzinfo=UTC), "s-1", fact_type="rules.status-changed"
        ),
        violation("fa_" + "9" * 32, "usr_1", datetime(2028, 1, 1, tzinfo=UTC), "b-elsewhere"),
    ]
    await insert_facts(pg_dsn(services), module_schema, [old, tie_a, tie_b, *unrelated])

    path = f"/funded-accounts/{acct}/breaches"
    for w in BOTH:
        mine = await http.get(w, path, OWNER)
        assert mine.status == 200, mine.body
        assert mine.headers["Content-Type"].startswith("application/json")
        assert mine.body == {"breaches": [tie_b, tie_a, streamed, old]}
        # The evidence comes back whole: its digest still checks out.
        assert mine.body["breaches"][0]["evidence"]["sha256"] == tie_b["evidence"]["sha256"]
        # An admin reads any account's breaches (support needs it).
        assert (await http.get(w, path, ADMIN)).body == mine.body
        # Another user's account: 404, the same answer as an account that does not exist.
        other = await http.get(w, path, OTHER)
        missing = await http.get(w, f"/funded-accounts/fa_{'0' * 32}/breaches", OWNER)
        assert other.status == missing.status == 404
        assert other.body == missing.body
        assert other.body["error"]["code"] == "not_found"
        assert (await http.get(w, f"/funded-accounts/fa_{'0' * 32}/breaches", ADMIN)).status == 404
        # No token, or a bad one: 401.
        assert (await http.get(w, path)).status == 401
        expired = {"Authorization": f"Bearer {token('usr_1', ttl=-10)}"}
        refused = await http.get(w, path, expired)
        assert refused.status == 401 and refused.body["error"]["code"] == "unauthorized"


async def test_an_account_without_breaches_has_an_empty_list(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    for w in BOTH:
        ans = await http.get(w, f"/funded-accounts/{acct}/breaches", OWNER)
        assert ans.status == 200 and ans.body == {"breaches": []}


async def test_the_answer_holds_the_newest_breaches_only(
    http: Http, kafka: Kafka, services: Services, module_schema: str
) -> None:
    acct = await new_account(kafka, http)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    facts = [
        violation(acct, "usr_1", start + timedelta(hours=i), f"b-{i:03d}")
        for i in range(MAX_BREACHES + 5)
    ]
    await insert_facts(pg_dsn(services), module_schema, facts)
    for w in BOTH:
        ans = await http.get(w, f"/funded-accounts/{acct}/breaches", OWNER)
        assert ans.status == 200
        ids = [b["event_id"] for b in ans.body["breaches"]]
        assert ids == [f"b-{i:03d}" for i in reversed(range(5, MAX_BREACHES + 5))]


async def test_explain_shows_the_breach_the_stream_made(
    http: Http, kafka: Kafka, services: Services, module_schema: str
) -> None:
    acct = await new_account(kafka, http)
    trigger_id = await breach_by_trades(kafka, http, acct)
    [fact] = await breaches_when(http, acct, 1)
    env = {**os.environ, "DATABASE_URL": services.database_url}
    env["FUNDEDFLOW_DB_SCHEMA"] = module_schema
    run = explain_cli(env, acct)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[0] == f"breach of account {acct} (user usr_1)"
    assert fact["event_id"] in run.stdout and trigger_id in run.stdout
    assert ["rule", "drawdown"] in [line.split() for line in run.stdout.splitlines()]
    # Facts gain evidence with rule packs; before that there is nothing to verify.
    last = run.stdout.splitlines()[-1]
    if "evidence" in fact:
        assert last == f"evidence hash OK (sha256 {fact['evidence']['sha256']})"
    else:
        assert last.startswith("no evidence: ")
