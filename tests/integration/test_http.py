"""The HTTP API end to end: two real workers, every route asked on both."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from app.settings import Settings
from app.sink_db import asyncpg_dsn
from app.tiers_seed import seed_tiers
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until, worker_env
from tests.integration.http_support import (
    ADMIN,
    Http,
    auth,
    forget_answer,
    stripe_signature,
    token,
)
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

BOTH = (0, 1)
OWNER = auth("usr_1")
OTHER = auth("usr_2")


@pytest.fixture(scope="module")
def http_prefix() -> str:
    return s.uid("http") + "."


@pytest.fixture(scope="module")
def workers(
    services: Services,
    http_prefix: str,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Worker]]:
    tmp = tmp_path_factory.mktemp("http")
    env = worker_env(
        services,
        http_prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
        WEB_HOST="127.0.0.1",
        RATE_LIMIT_PER_MINUTE="200",
    )
    asyncio.run(seed_tiers(Settings.from_env(env)))
    ws = [Worker(env, tmp / f"w{i}", tmp / f"w{i}.log").start() for i in BOTH]
    yield ws
    for w in ws:
        w.stop()


@pytest.fixture
async def http(workers: list[Worker]) -> AsyncIterator[Http]:
    async with Http(workers) as h:
        await h.wait_healthy()
        yield h


@pytest.fixture
async def kafka(
    services: Services, http_prefix: str, workers: list[Worker]
) -> AsyncIterator[Kafka]:
    k = Kafka(services, http_prefix)
    k.workers.extend(workers)
    await k.start()
    yield k
    await k.stop()


async def new_account(kafka: Kafka, http: Http, profit: str | None = "10000.00") -> str:
    asm = s.uid("asm")
    await kafka.send("assessment.completed", asm, s.assessment(asm, user="usr_1"))
    acct = s.account_of(asm)
    # Trades for an account that does not exist yet are dead letters: wait for it first.
    await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
    if profit is not None:
        await kafka.send_many(
            [
                ("trades", acct, s.opened(acct, "p-0", "1000.00")),
                ("trades", acct, s.closed(acct, "p-0", profit)),
            ]
        )
        await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == profit)
    return acct


def withdraw_body(amount: Any, destination: str = "acct_1Test") -> dict[str, Any]:
    return {"amount": amount, "payment_method": "stripe_connect", "destination": destination}


async def test_authentication_and_visibility(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http, profit=None)
    path = f"/funded-accounts/{acct}"
    expired = {"Authorization": f"Bearer {token('usr_1', ttl=-10)}"}
    wrong_key = "not-the-secret-but-also-32-bytes-long"
    forged = {"Authorization": f"Bearer {token('usr_1', key=wrong_key)}"}
    for w in BOTH:
        assert (await http.get(w, path)).status == 401
        assert (await http.get(w, path, expired)).status == 401
        assert (await http.get(w, path, forged)).status == 401
        assert (await http.get(w, path, {"Authorization": "Basic abc"})).status == 401
        other = await http.get(w, path, OTHER)
        assert other.status == 404 and other.body["error"]["code"] == "not_found"
        missing = await http.get(w, "/funded-accounts/fa_" + "0" * 32, OWNER)
        assert missing.status == 404
        mine = await http.get(w, path, OWNER)
        assert mine.status == 200 and mine.body["id"] == acct
        assert (await http.get(w, "/admin/withdrawals/pending", OWNER)).status == 403
        forbidden = await http.post(w, "/admin/withdrawals/x/approve", {}, OWNER)
        assert forbidden.status == 403 and forbidden.body["error"]["code"] == "forbidden"
        assert (await http.get(w, "/health")).status == 200
        # Admins read any account but cannot withdraw from one that is not theirs.
        assert (await http.get(w, path, ADMIN)).status == 200
        body = {"amount": "100.00", "payment_method": "stripe_connect", "destination": "acct_x1"}
        assert (await http.post(w, f"{path}/withdraw", body, ADMIN)).status == 404
        # Faust's own pages (tables, router) would show state without a token: switched off.
        for page in (f"/table/accounts/{acct}/", "/router/", "/table/"):
            assert (await http.get(w, page)).status == 404, page
        metrics = await http.get(w, "/metrics", OWNER)
        assert metrics.status == 200 and "fundedflow_events_processed_total" in metrics.body


async def test_account_detail_is_current_on_both_workers(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    await kafka.send("trades", acct, s.opened(acct, "p-1", "2000.00"))
    await kafka.send("trades", acct, s.updated(acct, "p-1", "-350.25", notional="2100.00"))
    # As soon as one worker shows the trade, the other shows it too: both read the owner.
    first = await http.account_when(0, acct, OWNER, lambda a: a["unrealized_pnl"] == "-350.25")
    second = (await http.get(1, f"/funded-accounts/{acct}", OWNER)).body
    assert second == first
    assert first["current_balance"] == "109649.75"
    assert first["peak_balance"] == "110000.00"
    assert first["positions"][0]["position_id"] == "p-1"
    assert first["rules"]["drawdown"]["status"] == "safe"
    assert first["tier"]["tier_id"] == "funded-100k"
    assert first["user_id"] == "usr_1" and first["withdrawable_amount"] == "7719.80"


async def test_withdrawal_lifecycle_over_http(
    http: Http, kafka: Kafka, double: StripeDouble
) -> None:
    acct = await new_account(kafka, http)  # withdrawable 8,000.00
    small = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body("250.00"), OWNER)
    assert small.status == 201, small.body
    w = small.body["withdrawal"]
    assert w["status"] == "completed" and w["stripe_payout_id"].startswith("tr_double_")
    assert w["approved_by"] == "auto" and w["amount"] == "250.00"

    large = await http.post(1, f"/funded-accounts/{acct}/withdraw", withdraw_body(2000), OWNER)
    assert large.status == 201 and large.body["withdrawal"]["status"] == "pending"
    assert large.body["withdrawal"]["requires_review"] is True
    other = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body("1500.5"), OWNER)
    assert other.status == 201

    async def pending_ids() -> set[str] | None:
        ans = await http.get(1, "/admin/withdrawals/pending", ADMIN)
        ids = {x["id"] for x in ans.body["withdrawals"]}
        wanted = {large.body["withdrawal"]["id"], other.body["withdrawal"]["id"]}
        return ids if wanted <= ids else None

    await wait_until(pending_ids, timeout=30, what="pending list")
    mine = [large.body["withdrawal"]["id"], other.body["withdrawal"]["id"]]  # requested in order
    for w in BOTH:
        listed = (await http.get(w, "/admin/withdrawals/pending", ADMIN)).body["withdrawals"]
        entry = next(x for x in listed if x["id"] == large.body["withdrawal"]["id"])
        assert entry["user_id"] == "usr_1" and entry["account"]["id"] == acct
        assert [x["id"] for x in listed if x["id"] in mine] == mine, w  # oldest first
        requested = [x["requested_at"] for x in listed]
        assert requested == sorted(requested), w

    lid, oid = large.body["withdrawal"]["id"], other.body["withdrawal"]["id"]
    approved = await http.post(1, f"/admin/withdrawals/{lid}/approve", {}, ADMIN)
    assert approved.status == 200 and approved.body["withdrawal"]["status"] == "completed"
    assert approved.body["withdrawal"]["approved_by"] == "adm_1"
    again = await http.post(0, f"/admin/withdrawals/{lid}/approve", {}, ADMIN)
    assert again.status == 409 and again.body["error"]["code"] == "not_pending"
    for bad in ({}, {"reason": ""}, {"reason": "x" * 501}):
        ans = await http.post(0, f"/admin/withdrawals/{oid}/reject", bad, ADMIN)
        assert ans.status == 422, bad
    assert (
        await http.post(0, f"/admin/withdrawals/{oid}/reject", {"reason": 5}, ADMIN)
    ).status == 400
    rejected = await http.post(0, f"/admin/withdrawals/{oid}/reject", {"reason": "kyc"}, ADMIN)
    assert rejected.status == 200 and rejected.body["withdrawal"]["status"] == "rejected"
    assert rejected.body["withdrawal"]["rejection_reason"] == "kyc"
    twice = await http.post(1, f"/admin/withdrawals/{oid}/reject", {"reason": "kyc"}, ADMIN)
    assert twice.status == 409
    unknown = await http.post(1, "/admin/withdrawals/wd_nope/approve", {}, ADMIN)
    assert unknown.status == 404

    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert listing.status == 200
    statuses = [x["status"] for x in listing.body["withdrawals"]]
    assert statuses == ["rejected", "completed", "completed"]  # newest first
    assert (await http.get(0, f"/funded-accounts/{acct}/withdrawals", OTHER)).status == 404
    assert double.created_per_withdrawal[lid] == 1 and double.created_per_withdrawal[oid] == 0

    for worker in BOTH:
        accounts = await wait_until(
            functools.partial(_listed, http, acct, worker),
            timeout=30,
            what="account in GET /funded-accounts",
        )
        summary = next(a for a in accounts if a["id"] == acct)
        assert summary["total_withdrawals"] == "2250.00"
        assert summary["withdrawals"] == {"pending": 0, "completed_total": "2250.00"}
        assert summary["withdrawable_amount"] == "5750.00"


async def _listed(
    http: Http, acct: str, worker: int = 1, headers: dict[str, str] = OWNER
) -> list[dict[str, Any]] | None:
    ans = await http.get(worker, "/funded-accounts", headers)
    assert ans.status == 200
    accounts = ans.body["funded_accounts"]
    return accounts if any(a["id"] == acct for a in accounts) else None


async def test_funded_accounts_newest_activated_first_on_both_workers(
    http: Http, kafka: Kafka
) -> None:
    user = s.uid("usr_list")
    headers = auth(user)
    # Sent out of order: the list is sorted by activation, not by arrival or insertion.
    activated = ["2027-03-02T10:00:00Z", "2027-03-03T10:00:00Z", "2027-03-01T10:00:00Z"]
    accounts = []
    for when in activated:
        asm = s.uid("asm")
        await kafka.send(
            "assessment.completed", asm, {**s.assessment(asm, user=user), "completed_at": when}
        )
        accounts.append(s.account_of(asm))
    newest_first = [accounts[1], accounts[0], accounts[2]]

    async def all_listed(worker: int) -> list[dict[str, Any]] | None:
        listed = await _listed(http, accounts[2], worker, headers)
        if listed is None or {a["id"] for a in listed} != set(accounts):
            return None
        return listed

    for w in BOTH:
        listed = await wait_until(
            functools.partial(all_listed, w), timeout=60, what="three accounts"
        )
        assert [a["id"] for a in listed] == newest_first, w
        assert [a["activated_at"] for a in listed] == sorted(activated, reverse=True)
        assert all(a["status"] == "active" and a["withdrawals"]["pending"] == 0 for a in listed)
        # Another user sees none of them.
        theirs = (await http.get(w, "/funded-accounts", OTHER)).body["funded_accounts"]
        assert not {a["id"] for a in theirs} & set(accounts)
        unauthenticated = await http.get(w, "/funded-accounts")
        assert unauthenticated.status == 401


async def test_approval_rejected_when_the_recheck_fails(
    http: Http, kafka: Kafka, double: StripeDouble
) -> None:
    acct = await new_account(kafka, http)  # withdrawable 8,000.00
    req = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body("2500.00"), OWNER)
    assert req.status == 201 and req.body["withdrawal"]["status"] == "pending"
    wid = req.body["withdrawal"]["id"]
    # A losing trade after the request: profit 3,000.00, the trader's share 2,400.00 < 2,500.00.
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-loss", "1000.00")),
            ("trades", acct, s.closed(acct, "p-loss", "-7000.00")),
        ]
    )
    await http.account_when(1, acct, OWNER, lambda a: a["realized_pnl"] == "3000.00")
    ans = await http.post(1, f"/admin/withdrawals/{wid}/approve", {}, ADMIN)
    assert ans.status == 200, ans.body
    w = ans.body["withdrawal"]
    assert w["status"] == "rejected" and w["rejection_reason"] == "exceeds_withdrawable"
    assert w["approved_at"] is None and w["stripe_payout_id"] is None
    assert double.created_per_withdrawal[wid] == 0
    for worker in BOTH:
        after = await http.get(worker, f"/funded-accounts/{acct}", OWNER)
        assert after.body["status"] == "active" and after.body["total_withdrawals"] == "0.00"
        assert after.body["withdrawals"]["pending"] == 0
        again = await http.post(worker, f"/admin/withdrawals/{wid}/approve", {}, ADMIN)
        assert again.status == 409 and again.body["error"]["code"] == "not_pending"


async def test_admin_decisions_with_an_idempotency_key(
    http: Http, kafka: Kafka, double: StripeDouble, services: Services, http_prefix: str
) -> None:
    acct = await new_account(kafka, http)  # withdrawable 8,000.00
    path = f"/funded-accounts/{acct}/withdraw"
    ids = []
    for amount in ("1000.00", "1100.00", "1200.00"):
        ans = await http.post(0, path, withdraw_body(amount), OWNER)
        assert ans.status == 201 and ans.body["withdrawal"]["status"] == "pending"
        ids.append(ans.body["withdrawal"]["id"])
    to_approve, to_reject, untouched = ids
    approve = f"/admin/withdrawals/{to_approve}/approve"
    reject = f"/admin/withdrawals/{to_reject}/reject"
    approve_key = {"Idempotency-Key": uuid.uuid4().hex, **ADMIN}
    reject_key = {"Idempotency-Key": uuid.uuid4().hex, **ADMIN}

    first = await http.post(0, approve, {}, approve_key)
    assert first.status == 200 and first.body["withdrawal"]["status"] == "completed"
    for w in BOTH:  # a repeat answers the first answer and decides nothing
        again = await http.post(w, approve, {}, approve_key)
        assert (again.status, again.body) == (first.status, first.body), w
    # The same key on another withdrawal, or another route, is another request.
    for w in BOTH:
        for other in (
            http.post(w, f"/admin/withdrawals/{untouched}/approve", {}, approve_key),
            http.post(w, f"/admin/withdrawals/{to_approve}/reject", {"reason": "x"}, approve_key),
        ):
            conflict = await other
            assert conflict.status == 409, (w, conflict.body)
            assert conflict.body["error"]["code"] == "idempotency_key_reused"
    # Without a key the same approval is a new decision, refused: the first one stands.
    plain = await http.post(1, approve, {}, ADMIN)
    assert plain.status == 409 and plain.body["error"]["code"] == "not_pending"
    # Redis lost the answer: the repeat is the same command (its event id comes from the key),
    # which the account agent does not apply twice.
    await forget_answer(services.redis_url, http_prefix, "adm_1", approve_key["Idempotency-Key"])
    lost = await http.post(1, approve, {}, approve_key)
    assert (lost.status, lost.body) == (first.status, first.body)
    assert double.created_per_withdrawal[to_approve] == 1

    rejected = await http.post(1, reject, {"reason": "kyc"}, reject_key)
    assert rejected.status == 200 and rejected.body["withdrawal"]["status"] == "rejected"
    for w in BOTH:
        again = await http.post(w, reject, {"reason": "kyc"}, reject_key)
        assert (again.status, again.body) == (rejected.status, rejected.body), w
        conflict = await http.post(w, reject, {"reason": "another reason"}, reject_key)
        assert conflict.status == 409 and conflict.body["error"]["code"] == "idempotency_key_reused"
    await forget_answer(services.redis_url, http_prefix, "adm_1", reject_key["Idempotency-Key"])
    for w in BOTH:
        conflict = await http.post(w, reject, {"reason": "another reason"}, reject_key)
        assert conflict.status == 409 and conflict.body["error"]["code"] == "idempotency_key_reused"
    lost = await http.post(0, reject, {"reason": "kyc"}, reject_key)
    assert (lost.status, lost.body) == (rejected.status, rejected.body)
    # Another admin's key of the same text is another key.
    other_admin = {"Idempotency-Key": reject_key["Idempotency-Key"], **auth("adm_2", ["admin"])}
    taken = await http.post(0, reject, {"reason": "kyc"}, other_admin)
    assert taken.status == 409 and taken.body["error"]["code"] == "not_pending"

    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    statuses = {x["id"]: x["status"] for x in listing.body["withdrawals"]}
    assert statuses == {to_approve: "completed", to_reject: "rejected", untouched: "pending"}
    assert double.created_per_withdrawal[to_reject] == 0


async def test_every_refusal_code(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    cases = [
        (withdraw_body("99.99"), 422, "below_minimum"),
        (withdraw_body("8000.01"), 422, "exceeds_withdrawable"),
        (withdraw_body("100.001"), 422, "invalid_amount"),
        (withdraw_body("NaN"), 422, "invalid_amount"),
        (withdraw_body("1e-3"), 422, "invalid_amount"),
        (withdraw_body("1e5"), 422, "exceeds_withdrawable"),  # an exponent form is an amount
        (
            {**withdraw_body("200.00"), "payment_method": "paypal"},
            422,
            "unsupported_payment_method",
        ),
        (withdraw_body("200.00", destination="bank-42"), 422, "invalid_destination"),
        (withdraw_body(True), 400, "invalid_request"),
        ({**withdraw_body("200.00"), "destination": 7}, 400, "invalid_request"),
    ]
    for w in BOTH:
        for body, status, code in cases:
            ans = await http.post(w, path, body, OWNER)
            assert (ans.status, ans.body["error"]["code"]) == (status, code), (body, ans.body)
        bad_json = await http.call(w, "POST", path, OWNER, data=b"{nope")
        assert bad_json.status == 400 and bad_json.body["error"]["code"] == "invalid_request"
        other = await http.post(w, path, withdraw_body("200.00"), OTHER)
        assert other.status == 404
    await kafka.send("trades", acct, s.opened(acct, "p-open", "100.00"))
    await http.account_when(0, acct, OWNER, lambda a: a["positions"])
    for w in BOTH:
        ans = await http.post(w, path, withdraw_body("200.00"), OWNER)
        assert (ans.status, ans.body["error"]["code"]) == (422, "open_positions"), w
    # Breach: the account closes and refuses withdrawals.
    await kafka.send("trades", acct, s.updated(acct, "p-open", "-20000.00"))
    await http.account_when(1, acct, OWNER, lambda a: a["status"] == "closed")
    for w in BOTH:
        ans = await http.post(w, path, withdraw_body("200.00"), OWNER)
        assert (ans.status, ans.body["error"]["code"]) == (422, "account_not_active"), w


async def test_min_trades_not_met_on_both_workers(http: Http, kafka: Kafka) -> None:
    """The bundled funded tiers ask for no minimum, so a tier that does is published here."""
    from domain.tiers import default_catalog

    base = next(t for t in default_catalog() if t.tier_id == "funded-100k").to_wire()
    tier_id = s.uid("funded-min2")
    await kafka.send("tiers", tier_id, {**base, "tier_id": tier_id, "min_trades": 2})
    asm = s.uid("asm")
    acct = s.account_of(asm)

    async def activated() -> bool:
        # Until every worker has read the new tier, an assessment on it is an unknown tier
        # (dead-lettered); the same assessment again gives the one account.
        await kafka.send("assessment.completed", asm, s.assessment(asm, "usr_1", tier=tier_id))
        await asyncio.sleep(1.0)
        ans = await http.get(0, f"/funded-accounts/{acct}", OWNER)
        return ans.status == 200

    await wait_until(activated, timeout=60, interval=0.5, what="account on the new tier")
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-1", "1000.00")),
            ("trades", acct, s.closed(acct, "p-1", "5000.00")),
        ]
    )
    await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == "5000.00")
    path = f"/funded-accounts/{acct}/withdraw"
    for w in BOTH:
        ans = await http.post(w, path, withdraw_body("200.00"), OWNER)
        assert (ans.status, ans.body["error"]["code"]) == (422, "min_trades_not_met"), ans.body
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-2", "1000.00")),
            ("trades", acct, s.closed(acct, "p-2", "100.00")),
        ]
    )
    await http.account_when(1, acct, OWNER, lambda a: a["realized_pnl"] == "5100.00")
    ans = await http.post(1, path, withdraw_body("200.00"), OWNER)
    assert ans.status == 201 and ans.body["withdrawal"]["status"] == "completed", ans.body


async def test_fifty_concurrent_withdrawals_never_exceed_withdrawable(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http, profit="5000.00")  # 4,000.00 withdrawable
    path = f"/funded-accounts/{acct}/withdraw"
    answers = await asyncio.gather(
        *(http.post(i % 2, path, withdraw_body("150.00"), OWNER) for i in range(50))
    )
    counts = Counter(a.status for a in answers)
    assert set(counts) <= {201, 422, 503}, counts
    assert all(a.status < 500 or a.status == 503 for a in answers)
    accepted = [a for a in answers if a.status == 201]
    assert 0 < len(accepted) <= 26  # 26 x 150 = 3,900 ≤ 4,000 < 27 x 150
    # Refused: past the money, or (with payouts still in flight) past the open-withdrawal cap.
    for a in answers:
        if a.status == 422:
            code = a.body["error"]["code"]
            assert code in {"exceeds_withdrawable", "too_many_open_withdrawals"}, a.body
        if a.status == 503:
            assert "Retry-After" in a.headers
    final = await http.account_when(0, acct, OWNER, lambda a: True)
    paid = int(final["total_withdrawals"].replace(".", ""))
    assert paid <= 4000_00
    assert int(final["withdrawable_amount"].replace(".", "")) + paid <= 4000_00


async def test_idempotency_key_across_workers_and_restart(
    http: Http, kafka: Kafka, workers: list[Worker], services: Services, http_prefix: str
) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    key = {"Idempotency-Key": uuid.uuid4().hex, **OWNER}
    first = await http.post(0, path, withdraw_body("300.00"), key)
    assert first.status == 201
    second = await http.post(1, path, withdraw_body("300.00"), key)
    assert (second.status, second.body) == (first.status, first.body)
    # The same request with its JSON keys in another order is the same request.
    reordered = dict(reversed(list(withdraw_body("300.00").items())))
    assert list(reordered) != list(withdraw_body("300.00"))
    for worker in BOTH:
        again = await http.post(worker, path, reordered, key)
        assert (again.status, again.body) == (first.status, first.body), worker
    others = [
        withdraw_body("301.00"),
        withdraw_body("300.00", destination="acct_2Other"),
        {**withdraw_body("300.00"), "payment_method": "paypal"},
    ]
    for worker in BOTH:
        for other in others:
            conflict = await http.post(worker, path, other, key)
            assert conflict.status == 409, (worker, other, conflict.body)
            assert conflict.body["error"]["code"] == "idempotency_key_reused"
    # Redis lost the answer: the key still names the first withdrawal, and a request that is
    # not the first one (another destination, the same amount) is still refused.
    await forget_answer(services.redis_url, http_prefix, "usr_1", key["Idempotency-Key"])
    for worker in BOTH:
        conflict = await http.post(
            worker, path, withdraw_body("300.00", destination="acct_2Other"), key
        )
        assert conflict.status == 409, (worker, conflict.body)
        assert conflict.body["error"]["code"] == "idempotency_key_reused"
    lost = await http.post(1, path, withdraw_body("300.00"), key)
    assert (lost.status, lost.body) == (first.status, first.body)
    for w in workers:
        w.stop()
    for w in workers:
        w.start()
    await http.wait_healthy()
    third = await http.post(0, path, withdraw_body("300.00"), key)
    assert (third.status, third.body) == (first.status, first.body)
    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert len(listing.body["withdrawals"]) == 1


async def test_a_refused_request_then_another_body_after_redis_lost_the_answer_is_409(
    http: Http, kafka: Kafka, services: Services, http_prefix: str
) -> None:
    """Hardening defect 7: the first request under a key was refused (422); Redis lost that
    answer; the same key with another body is another request under a used key (409), not the
    stale refusal, and it creates nothing. The first body again still gets its refusal."""
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    key = {"Idempotency-Key": uuid.uuid4().hex, **OWNER}
    first = await http.post(0, path, withdraw_body("50.00"), key)
    assert (first.status, first.body["error"]["code"]) == (422, "below_minimum")
    await forget_answer(services.redis_url, http_prefix, "usr_1", key["Idempotency-Key"])
    for worker in BOTH:
        other = await http.post(worker, path, withdraw_body("200.00"), key)
        assert other.status == 409, (worker, other.body)
        assert other.body["error"]["code"] == "idempotency_key_reused"
    again = await http.post(1, path, withdraw_body("50.00"), key)
    assert (again.status, again.body) == (first.status, first.body)
    listing = await http.get(0, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert listing.body["withdrawals"] == []


async def test_stripe_webhook_reversal(http: Http, kafka: Kafka, double: StripeDouble) -> None:
    acct = await new_account(kafka, http)
    paid = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body("400.00"), OWNER)
    w = paid.body["withdrawal"]
    assert w["status"] == "completed"
    event = {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "object": "event",
        "type": "transfer.reversed",
        "created": 1764000000,
        "data": {
            "object": {
                "id": w["stripe_payout_id"],
                "object": "transfer",
                "amount": 40000,
                "amount_reversed": 40000,
                "reversed": True,
                "metadata": {"withdrawal_id": w["id"], "account_id": acct, "user_id": "usr_1"},
            }
        },
    }
    payload = json.dumps(event)
    forged = await http.call(
        1, "POST", "/webhooks/stripe", {"Stripe-Signature": "t=1,v1=deadbeef"}, data=payload
    )
    assert forged.status == 400
    for worker in (1, 0):  # the same event twice, on both workers: one effect
        ans = await http.call(
            worker,
            "POST",
            "/webhooks/stripe",
            {"Stripe-Signature": stripe_signature(payload)},
            data=payload,
        )
        assert ans.status == 200
    after = await http.account_when(
        1, acct, OWNER, lambda a: a["total_withdrawals"] == "0.00", timeout=30
    )
    assert after["withdrawable_amount"] == "8000.00"
    listing = await http.get(0, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert listing.body["withdrawals"][0]["status"] == "failed"
    ignored = {**event, "id": "evt_other", "type": "payout.paid"}
    body = json.dumps(ignored)
    ans = await http.call(
        0, "POST", "/webhooks/stripe", {"Stripe-Signature": stripe_signature(body)}, data=body
    )
    assert ans.status == 200


def reversal_event(w: dict[str, Any], acct: str, amount: int, reversed_cents: int) -> str:
    """A signed-able `transfer.reversed` as Stripe sends it, partial reversals included."""
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:12]}",
            "object": "event",
            "type": "transfer.reversed",
            "created": 1764000000,
            "data": {
                "object": {
                    "id": w["stripe_payout_id"],
                    "object": "transfer",
                    "amount": amount,
                    "amount_reversed": reversed_cents,
                    "reversed": reversed_cents >= amount,
                    "metadata": {"withdrawal_id": w["id"], "account_id": acct},
                }
            },
        }
    )


async def test_partial_reversals_give_back_exactly_the_reversed_cents(
    http: Http, kafka: Kafka, services: Services, module_schema: str
) -> None:
    """Hardening defect 1, on the real stack: a $1 reversal of a $2,000 transfer gives back
    $1, not $2,000; the cumulative figure is followed; the row and the facts say so."""
    acct = await new_account(kafka, http)  # 8,000.00 withdrawable
    asked = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body("2000.00"), OWNER)
    assert asked.status == 201 and asked.body["withdrawal"]["status"] == "pending"
    wid = asked.body["withdrawal"]["id"]
    paid = await http.post(1, f"/admin/withdrawals/{wid}/approve", {}, ADMIN)
    w = paid.body["withdrawal"]
    assert w["status"] == "completed", paid.body

    async def webhook(payload: str, worker: int = 0) -> None:
        ans = await http.call(
            worker,
            "POST",
            "/webhooks/stripe",
            {"Stripe-Signature": stripe_signature(payload)},
            data=payload,
        )
        assert ans.status == 200, ans.body

    await webhook(reversal_event(w, acct, 200000, 100))  # $1.00
    after = await http.account_when(
        1, acct, OWNER, lambda a: a["total_withdrawals"] == "1999.00", timeout=30
    )
    assert after["withdrawable_amount"] == "6001.00"
    listed = (await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)).body
    assert listed["withdrawals"][0]["status"] == "completed"
    assert listed["withdrawals"][0]["reversed_total"] == "1.00"
    # An older, smaller figure changes nothing; the rest fails the withdrawal.
    await webhook(reversal_event(w, acct, 200000, 50), worker=1)
    await webhook(reversal_event(w, acct, 200000, 200000))
    after = await http.account_when(
        0, acct, OWNER, lambda a: a["total_withdrawals"] == "0.00", timeout=30
    )
    assert after["withdrawable_amount"] == "8000.00"
    listed = (await http.get(0, f"/funded-accounts/{acct}/withdrawals", OWNER)).body
    assert listed["withdrawals"][0]["status"] == "failed"
    assert listed["withdrawals"][0]["reversed_total"] == "2000.00"

    # PostgreSQL: the row's reversed_total, and the two withdrawal.reversed facts.
    async def rows() -> tuple[Any, list[Any]] | None:
        conn = await asyncpg.connect(asyncpg_dsn(services.database_url))
        try:
            await conn.execute(f'SET search_path TO "{module_schema}"')
            row = await conn.fetchrow(
                "SELECT status, reversed_total FROM withdrawals WHERE id = $1", wid
            )
            facts = await conn.fetch(
                "SELECT payload FROM account_events WHERE account_id = $1 "
                "AND type = 'withdrawal.reversed' ORDER BY occurred_at, event_id",
                acct,
            )
        finally:
            await conn.close()
        if row is None or row["status"] != "failed" or len(facts) < 2:
            return None
        return row, facts

    found = await wait_until(rows, timeout=30, what="the reversal in PostgreSQL")
    assert found is not None
    row, facts = found
    assert str(row["reversed_total"]) == "2000.00"
    amounts = sorted(
        (json.loads(f["payload"])["amount"], json.loads(f["payload"])["reversed_total"])
        for f in facts
    )
    assert amounts == [("1.00", "1.00"), ("1999.00", "2000.00")]


async def test_rate_limit(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http, profit=None)
    limited = auth("usr_busy")
    path = f"/funded-accounts/{acct}/withdraw"
    answers = [await http.post(i % 2, path, withdraw_body("1"), limited) for i in range(205)]
    statuses = Counter(a.status for a in answers)
    assert statuses[429] >= 1, statuses
    blocked = next(a for a in answers if a.status == 429)
    assert int(blocked.headers["Retry-After"]) >= 1


async def test_unreachable_owner_answers_503_with_retry_after(
    http: Http, kafka: Kafka, workers: list[Worker]
) -> None:
    accounts = [await new_account(kafka, http, profit=None) for _ in range(6)]
    workers[1].kill()  # SIGKILL: the group still names it as an owner for a while
    try:
        answers = [await http.get(0, f"/funded-accounts/{a}", OWNER) for a in accounts]
        posts = [
            await http.post(0, f"/funded-accounts/{a}/withdraw", withdraw_body("100.00"), OWNER)
            for a in accounts
        ]
        assert {a.status for a in answers} <= {200, 503}, [a.body for a in answers]
        assert {p.status for p in posts} <= {422, 503}, [p.body for p in posts]
        unavailable = [a for a in answers + posts if a.status == 503]
        # Four partitions over two workers: some of six accounts were the dead worker's.
        assert unavailable, "no account of the killed worker among six"
        for a in unavailable:
            assert a.headers.get("Retry-After") and a.body["error"]["code"] == "unavailable"
    finally:
        workers[1].start()
        await http.wait_healthy()


PACK_TIER = "funded-100k-static-10-daily-5-prague"  # min_trading_days 4 (domain/data/tiers.json)


async def test_payout_eligibility_and_gate_refusals_on_both_workers(
    http: Http, kafka: Kafka
) -> None:
    """A rule-pack tier's gate over HTTP: eligibility before and after it is met, and the
    422 that names it in `error.details`, asked on both workers (one forwards to the owner)."""
    asm = s.uid("asm")
    # Activated at a pinned instant: the shared test clock (streams.ts) moves on with every
    # test before this one, and the trades below are dated from 2026-11-23.
    activation = {**s.assessment(asm, "usr_1", PACK_TIER), "completed_at": "2026-11-23T10:00:00Z"}
    await kafka.send("assessment.completed", asm, activation)
    acct = s.account_of(asm)
    await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
    path = f"/funded-accounts/{acct}/payout-eligibility"

    async def trading_day(n: int, pnl: str) -> None:
        # Noon UTC of 2026-11-23 + n days: one Prague trading day each (activation's is day 0).
        at = f"2026-11-{23 + n}T12:00:00Z"
        await kafka.send_many(
            [
                ("trades", acct, {**s.opened(acct, f"p-{n}", "1000.00"), "occurred_at": at}),
                ("trades", acct, {**s.closed(acct, f"p-{n}", pnl), "occurred_at": at}),
            ]
        )

    for w in BOTH:
        answer = await http.get(w, path, OWNER)
        assert answer.status == 200, answer.body
        assert not answer.body["eligible"] and answer.body["max_amount"] == "0.00"
        gates = {g["gate"]: g for g in answer.body["gates"]}
        assert list(gates) == [
            "account_active",
            "no_open_positions",
            "min_trades",
            "min_withdrawal",
            "min_trading_days",
        ]
        assert gates["min_trading_days"] | {"message": ""} == {
            "gate": "min_trading_days",
            "passed": False,
            "value": "0",
            "required": "4",
            "message": "",
        }
        assert (await http.get(w, path, OTHER)).status == 404
        assert (await http.get(w, path)).status == 401
    for n in range(3):
        await trading_day(n, "1000.00")
    await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == "3000.00")
    for w in BOTH:
        gates = {g["gate"]: g for g in (await http.get(w, path, OWNER)).body["gates"]}
        assert gates["min_withdrawal"]["passed"] and not gates["min_trading_days"]["passed"]
        assert gates["min_trading_days"]["value"] == "3"
        refused = await http.post(
            w, f"/funded-accounts/{acct}/withdraw", withdraw_body("100.00"), OWNER
        )
        assert refused.status == 422, refused.body
        error = refused.body["error"]
        assert error["code"] == "min_trading_days_not_met"
        assert error["details"] == {
            "gate": "min_trading_days",
            "passed": False,
            "value": "3",
            "required": "4",
            "message": "3 trading days (a position opened or closed), at least 4 required",
        }
    await trading_day(3, "1000.00")
    await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == "4000.00")
    for w in BOTH:
        answer = await http.get(w, path, OWNER)
        assert answer.body["eligible"], answer.body
        assert answer.body["max_amount"] == "3200.00"  # 0.80 x 4,000.00
        detail = (await http.get(w, f"/funded-accounts/{acct}", OWNER)).body
        assert set(detail["rules"]) == {"max_loss", "daily_loss", "risk_per_trade"}
        assert detail["rules"]["max_loss"]["floor"] == "90000.00"
        assert detail["trading_day"]["locked_until"] is None
    accepted = await http.post(
        1, f"/funded-accounts/{acct}/withdraw", withdraw_body("100.00"), OWNER
    )
    assert accepted.status == 201, accepted.body


EVERY_RULE = "funded-100k-every-rule-eod-10-soft-daily-5-new-york"
# ... min_trading_days 5, min_winning_days 3 of 200.00, consistency 0.40, payouts every 14 days


async def test_each_payout_gate_over_http_until_a_payout_then_the_interval(
    http: Http, kafka: Kafka
) -> None:
    """Every gate of a pack tier in turn, on both workers: the eligibility's figure, then the
    422 naming the gate, until a withdrawal is paid; the next request waits 14 days."""
    asm = s.uid("asm")
    # Activated at a pinned instant: the shared test clock (streams.ts) moves on with every
    # test before this one, and the trades below are dated from 2026-11-23.
    activation = {**s.assessment(asm, "usr_1", EVERY_RULE), "completed_at": "2026-11-23T10:00:00Z"}
    await kafka.send("assessment.completed", asm, activation)
    acct = s.account_of(asm)
    await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
    realized = 0

    async def day(n: int, pnl_cents: int) -> None:
        # 18:00 UTC is 13:00 in New York: one trading day each (resets at 17:00 there).
        nonlocal realized
        at = f"2026-11-{23 + n}T18:00:00Z"
        realized += pnl_cents
        pnl = f"{pnl_cents // 100}.{pnl_cents % 100:02d}"
        await kafka.send_many(
            [
                ("trades", acct, {**s.opened(acct, f"p-{n}", "1000.00"), "occurred_at": at}),
                ("trades", acct, {**s.closed(acct, f"p-{n}", pnl), "occurred_at": at}),
            ]
        )
        total = f"{realized // 100}.{realized % 100:02d}"
        await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == total)

    async def gates() -> dict[str, dict[str, Any]]:
        answers = [
            await http.get(w, f"/funded-accounts/{acct}/payout-eligibility", OWNER) for w in BOTH
        ]
        both = [{g["gate"]: g for g in a.body["gates"]} for a in answers]
        for one in both:  # the interval's figure is the time since, read at each call
            one["payout_interval_days"] = {
                k: v
                for k, v in one["payout_interval_days"].items()
                if k not in ("value", "message")
            }
        assert both[0] == both[1]
        return {g["gate"]: g for g in answers[0].body["gates"]}

    async def refused_by(gate: str, code: str) -> None:
        for w in BOTH:
            answer = await http.post(
                w, f"/funded-accounts/{acct}/withdraw", withdraw_body("100.00"), OWNER
            )
            assert answer.status == 422, answer.body
            assert answer.body["error"]["code"] == code
            assert answer.body["error"]["details"]["gate"] == gate

    for n, pnl in enumerate((1000_00, 100_00, 300_00, 50_00, 20_00)):
        await day(n, pnl)
    g = await gates()
    assert g["min_trading_days"]["passed"] and g["min_trading_days"]["value"] == "5"
    assert not g["min_winning_days"]["passed"] and g["min_winning_days"]["value"] == "2"
    await refused_by("min_winning_days", "min_winning_days_not_met")
    await day(5, 400_00)
    g = await gates()
    assert g["min_winning_days"]["passed"] and not g["consistency"]["passed"]
    # best day 1,000.00 of 1,870.00: above 0.4 x 1,870.00 = 748.00
    # 13:00 in New York on 11-23 is in the trading day that began at 17:00 on 11-22
    assert g["consistency"]["value"] == "best day 2026-11-22 1000.00 of total 1870.00"
    await refused_by("consistency", "consistency_not_met")
    await day(6, 700_00)  # total 2,570.00: 1,000.00 is within 0.4 x 2,570.00 = 1,028.00
    g = await gates()
    assert all(x["passed"] for x in g.values()), [x for x in g.values() if not x["passed"]]
    paid = await http.post(1, f"/funded-accounts/{acct}/withdraw", withdraw_body("100.00"), OWNER)
    assert paid.status == 201 and paid.body["withdrawal"]["status"] == "completed", paid.body
    g = await gates()
    assert not g["payout_interval_days"]["passed"]
    assert g["payout_interval_days"]["required"] == "14 days 00:00:00"
    await refused_by("payout_interval_days", "payout_interval_not_met")
