"""Hostile and odd input at the HTTP edge, against two real workers: every answer is the
contract's 4xx at once (never a 503 after waiting for a dead-lettered command, never a 500), and
nothing changes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.settings import Settings
from app.tiers_seed import seed_tiers
from tests.integration import streams as s
from tests.integration.conftest import Services
from tests.integration.harness import Kafka, Worker, wait_until, worker_env
from tests.integration.http_support import (
    ADMIN,
    SECRET,
    Answer,
    Http,
    auth,
    stripe_signature,
)
from tests.integration.stripe_double import StripeDouble

pytestmark = pytest.mark.integration

BOTH = (0, 1)
OWNER = auth("usr_1")
OWNER_JSON = {**OWNER, "Content-Type": "application/json"}
# A refusal the edge decides itself: far below the 10 s an agent's dead letter used to cost.
AT_ONCE_SECONDS = 1.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def http_prefix() -> str:
    return s.uid("input") + "."


@pytest.fixture(scope="module")
def workers(
    services: Services,
    http_prefix: str,
    module_schema: str,
    double: StripeDouble,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Worker]]:
    tmp = tmp_path_factory.mktemp("input")
    env = worker_env(
        services,
        http_prefix,
        STRIPE_API_BASE=f"http://127.0.0.1:{double.port}",
        FUNDEDFLOW_DB_SCHEMA=module_schema,
        WEB_HOST="127.0.0.1",
        RATE_LIMIT_PER_MINUTE="1000",
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


async def new_account(kafka: Kafka, http: Http, profit: str = "10000.00") -> str:
    """An active account of usr_1 with 8,000.00 withdrawable."""
    asm = s.uid("asm")
    await kafka.send("assessment.completed", asm, s.assessment(asm, user="usr_1"))
    acct = s.account_of(asm)
    await http.account_when(0, acct, OWNER, lambda a: True, timeout=90)
    await kafka.send_many(
        [
            ("trades", acct, s.opened(acct, "p-0", "1000.00")),
            ("trades", acct, s.closed(acct, "p-0", profit)),
        ]
    )
    await http.account_when(0, acct, OWNER, lambda a: a["realized_pnl"] == profit)
    return acct


def withdraw_body(amount: Any = "200.00", destination: str = "acct_1Test") -> dict[str, Any]:
    return {"amount": amount, "payment_method": "stripe_connect", "destination": destination}


async def timed(call: Any) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


async def _unchanged(http: Http, acct: str, withdrawals: int = 0) -> None:
    for w in BOTH:
        listing = await http.get(w, f"/funded-accounts/{acct}/withdrawals", OWNER)
        assert listing.status == 200 and len(listing.body["withdrawals"]) == withdrawals, w
        detail = await http.get(w, f"/funded-accounts/{acct}", OWNER)
        assert detail.body["total_withdrawals"] == "0.00", w


async def test_over_long_destination_or_payment_method_is_422_at_once(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    cases = [
        (withdraw_body(destination="acct_" + "x" * 595), "invalid_destination"),
        ({**withdraw_body(), "payment_method": "stripe_connect" + " " * 586}, None),
        ({**withdraw_body(), "payment_method": "p" * 600}, "unsupported_payment_method"),
        ({**withdraw_body(), "destination": "a" * 501}, "invalid_destination"),
    ]
    for w in BOTH:
        for body, code in cases:
            ans, took = await timed(http.post(w, path, body, OWNER))
            expected = code or "unsupported_payment_method"
            assert (ans.status, ans.body["error"]["code"]) == (422, expected), (w, ans.body)
            assert took < AT_ONCE_SECONDS, (w, expected, took)
    await _unchanged(http, acct)
    # The account was never stuck: a good request goes through at once.
    ok = await http.post(1, path, withdraw_body("150.00"), OWNER)
    assert ok.status == 201 and ok.body["withdrawal"]["status"] == "completed", ok.body


async def test_reject_reason_with_surrounding_space_is_that_reason_at_once(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    ids = []
    for amount in ("1000.00", "1100.00"):
        ans = await http.post(0, path, withdraw_body(amount), OWNER)
        assert ans.status == 201 and ans.body["withdrawal"]["status"] == "pending"
        ids.append(ans.body["withdrawal"]["id"])
    keyed = {"Idempotency-Key": uuid.uuid4().hex, **ADMIN}
    for w, wid in zip(BOTH, ids, strict=True):
        reject = f"/admin/withdrawals/{wid}/reject"
        for bad in ("", "   ", "x" * 501, " " + "x" * 501):
            ans, took = await timed(http.post(w, reject, {"reason": bad}, ADMIN))
            assert (ans.status, ans.body["error"]["code"]) == (422, "invalid_reason"), bad
            assert took < AT_ONCE_SECONDS
        ans, took = await timed(http.post(w, reject, {"reason": "kyc missing "}, keyed))
        assert ans.status == 200, ans.body
        assert took < AT_ONCE_SECONDS * 3  # a real decision by the account agent
        assert ans.body["withdrawal"]["rejection_reason"] == "kyc missing"
        # The stripped text is the request: the same reason written without the space repeats
        # it under the same key, on the other worker too.
        again = await http.post(1 - w, reject, {"reason": "kyc missing"}, keyed)
        assert (again.status, again.body) == (ans.status, ans.body)
        keyed = {"Idempotency-Key": uuid.uuid4().hex, **ADMIN}
    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert {w["id"]: w["rejection_reason"] for w in listing.body["withdrawals"]} == {
        ids[0]: "kyc missing",
        ids[1]: "kyc missing",
    }


def _token(claims: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


async def test_a_sub_the_domain_refuses_and_a_string_exp_are_401(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    exp = int(time.time()) + 3600
    bad: list[tuple[dict[str, Any], str]] = [
        ({"sub": "usr_1 ", "exp": exp}, "padding"),
        ({"sub": " usr_1", "exp": exp, "roles": ["admin"]}, "padding"),
        ({"sub": "u" * 201, "exp": exp}, "longer than 200"),
        ({"sub": "usr_1\x00", "exp": exp}, "NUL"),
        ({"sub": "usr_1", "exp": str(exp)}, "'exp' must be a number"),
    ]
    pending = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body(1500), OWNER)
    wid = pending.body["withdrawal"]["id"]
    for w in BOTH:
        for claims, why in bad:
            headers = _token(claims)
            for call in (
                http.get(w, f"/funded-accounts/{acct}", headers),
                http.post(w, f"/funded-accounts/{acct}/withdraw", withdraw_body(), headers),
                http.post(w, f"/admin/withdrawals/{wid}/reject", {"reason": "x"}, headers),
            ):
                ans, took = await timed(call)
                assert ans.status == 401, (w, claims, ans.body)
                assert ans.body["error"]["code"] == "unauthorized"
                assert why in ans.body["error"]["message"], ans.body
                assert took < AT_ONCE_SECONDS
    await _unchanged(http, acct, withdrawals=1)
    still = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert still.body["withdrawals"][0]["status"] == "pending"


async def test_nul_and_lone_surrogates_are_400_and_change_nothing(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    bodies = [
        rb'{"amount": "200.00", "payment_method": "stripe_connect", "destination": "acct_1\u0000"}',
        rb'{"amount": "200.00", "payment_method": "stripe_connect\ud800", "destination": "acct_1"}',
        rb'{"amount": "200.00", "payment_method": "stripe_connect", "destination": "acct_1",'
        rb' "note": ["\udfff"]}',
        rb'{"amount": "200.00", "payment_method": "stripe_connect", "destination": "acct_1",'
        rb' "\u0000": 1}',
        b'{"amount": "200.00", "payment_method": "stripe_connect",'
        b' "destination": "acct_1\xed\xa0\x80"}',  # a surrogate as raw (CESU-style) bytes
        b'{"amount": "200.00", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ]
    for w in BOTH:
        for raw in bodies:
            ans, took = await timed(http.call(w, "POST", path, OWNER_JSON, data=raw))
            assert ans.status == 400, (w, raw[:80], ans.body)
            assert ans.body["error"]["code"] == "invalid_request"
            assert took < AT_ONCE_SECONDS
    pending = await http.post(0, path, withdraw_body(1500), OWNER)
    wid = pending.body["withdrawal"]["id"]
    for w in BOTH:
        for raw in (rb'{"reason": "kyc\u0000"}', rb'{"reason": "\ud800"}'):
            headers = {**ADMIN, "Content-Type": "application/json"}
            ans = await http.call(w, "POST", f"/admin/withdrawals/{wid}/reject", headers, data=raw)
            assert (ans.status, ans.body["error"]["code"]) == (400, "invalid_request"), ans.body
    await _unchanged(http, acct, withdrawals=1)
    listing = await http.get(0, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert listing.body["withdrawals"][0]["status"] == "pending"


async def test_a_body_over_1_mib_is_413_on_every_post_route(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    pending = await http.post(0, f"/funded-accounts/{acct}/withdraw", withdraw_body(1500), OWNER)
    wid = pending.body["withdrawal"]["id"]
    too_big = b'{"reason": "' + b"x" * MIB + b'"}'
    assert len(too_big) > MIB
    routes = [
        (f"/funded-accounts/{acct}/withdraw", OWNER),
        (f"/admin/withdrawals/{wid}/approve", ADMIN),
        (f"/admin/withdrawals/{wid}/reject", ADMIN),
        ("/webhooks/stripe", {"Stripe-Signature": stripe_signature(too_big.decode())}),
    ]
    for w in BOTH:
        for path, headers in routes:
            ans = await http.call(w, "POST", path, headers, data=too_big)
            assert ans.status == 413, (w, path, ans.body)
            assert ans.body["error"]["code"] == "payload_too_large" and ans.body["error"]["message"]
    # Exactly 1 MiB is not over the limit: read and refused for what it says.
    at_limit = json.dumps({"reason": "x" * (MIB - 14)}).encode()
    assert len(at_limit) == MIB
    ans = await http.call(0, "POST", f"/admin/withdrawals/{wid}/reject", ADMIN, data=at_limit)
    assert (ans.status, ans.body["error"]["code"]) == (422, "invalid_reason")
    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    assert listing.body["withdrawals"][0]["status"] == "pending"


async def test_exponent_amounts(http: Http, kafka: Kafka) -> None:
    acct = await new_account(kafka, http)
    path = f"/funded-accounts/{acct}/withdraw"
    tail = b', "payment_method": "stripe_connect", "destination": "acct_1Test"}'
    cases = [
        (b"1.5e2", 201, "150.00"),
        (b'"2E2"', 201, "200.00"),
        (b"1e2", 201, "100.00"),
        (b"1e-3", 422, "invalid_amount"),
        (b"1.2345e2", 201, "123.45"),
        (b"9.999e1", 422, "below_minimum"),  # 99.99 is an amount, below the minimum
        (b"1e400", 422, "invalid_amount"),
        (b'"1e-400"', 422, "invalid_amount"),
    ]
    for amount, status, what in cases:
        raw = b'{"amount": ' + amount + tail
        ans = await http.call(1, "POST", path, OWNER_JSON, data=raw)
        assert ans.status == status, (amount, ans.body)
        if status == 201:
            assert ans.body["withdrawal"]["amount"] == what
        else:
            assert ans.body["error"]["code"] == what, (amount, ans.body)


async def test_poison_trade_events_are_dead_letters_and_the_stream_goes_on(
    http: Http, kafka: Kafka
) -> None:
    acct = await new_account(kafka, http)
    surrogate = json.dumps(s.opened(acct, "p-x", "100.00", event_id="t-\ud800")).encode()
    nul = json.dumps(s.opened(acct, "p-y", "100.00", event_id="t-\x00")).encode()
    await kafka.send_many([("trades", acct, surrogate), ("trades", acct, nul)])
    await kafka.send("trades", acct, s.opened(acct, "p-ok", "100.00"))
    detail = await http.account_when(0, acct, OWNER, lambda a: a["positions"], timeout=30)
    assert [p["position_id"] for p in detail["positions"]] == ["p-ok"]

    async def both_dead() -> list[str] | None:
        reasons = [r for v, r in await kafka.dead_letters("trades") if v in (surrogate, nul)]
        return reasons if len(reasons) == 2 else None

    reasons = await wait_until(both_dead, timeout=30, what="two dead letters")
    assert all("invalid_event" in r for r in reasons), reasons
    assert any("lone surrogate" in r for r in reasons) and any("NUL" in r for r in reasons)


# --- the property: arbitrary bodies on every POST route ------------------------------------------


def drawn(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """`n` values drawn by Hypothesis (the requests then go to the real workers)."""
    out: list[Any] = []

    @hsettings(
        max_examples=n,
        database=None,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def signed(raw: bytes) -> dict[str, str]:
    ts = int(time.time())
    mac = hmac.new(b"whsec_test", f"{ts}.".encode() + raw, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={mac}", "Content-Type": "application/json"}


def _valid_reason(obj: Any) -> bool:
    reason = obj.get("reason") if isinstance(obj, dict) else None
    return isinstance(reason, str) and 1 <= len(reason.strip()) <= 500


async def test_arbitrary_bodies_on_every_post_route_never_5xx_and_change_only_when_valid(
    http: Http, kafka: Kafka
) -> None:
    """Arbitrary JSON and bytes (NUL, lone surrogates, huge and deeply nested values, wrong
    types, repeated keys) on the withdraw, reject, approve and webhook routes: every answer is
    a 4xx or a success, and the account moves only by the requests that were answered 201/200."""
    from tests.unit.app.test_input_surface import encode, hostile, json_values

    acct = await new_account(kafka, http)  # 8,000.00 withdrawable
    pending = await http.post(
        0, f"/funded-accounts/{acct}/withdraw", withdraw_body("1500.00"), OWNER
    )
    assert pending.status == 201
    wid = pending.body["withdrawal"]["id"]
    template = withdraw_body("150.00")
    bodies = drawn(hostile(template), 80)
    accepted: list[str] = []
    for i, (_, raw) in enumerate(bodies):
        ans = await http.call(
            i % 2, "POST", f"/funded-accounts/{acct}/withdraw", OWNER_JSON, data=raw
        )
        assert ans.status < 500, (raw[:200], ans.status, ans.body)
        assert ans.status in {201, 400, 409, 413, 422}, (raw[:200], ans.status, ans.body)
        if ans.status == 201:
            # Checked apart from the code under test: the body was a plain valid request.
            obj = json.loads(raw)
            # (Unknown fields are ignored, as JSON APIs do; every known one must be right.)
            assert set(template) <= set(obj) and obj["payment_method"] == "stripe_connect", raw
            assert isinstance(obj["destination"], str) and obj["destination"].strip(), raw
            amount = Decimal(str(obj["amount"]))
            assert amount == amount.quantize(Decimal("0.01")) and amount >= 100, raw
            assert ans.body["withdrawal"]["amount"] == f"{amount:.2f}"
            accepted.append(ans.body["withdrawal"]["id"])
        else:
            assert set(ans.body) == {"error"} and ans.body["error"]["code"], ans.body

    assert accepted and len(accepted) < len(bodies)  # both sides of the property were seen
    rejected = 0
    for i, (obj, raw) in enumerate(drawn(hostile({"reason": "kyc"}), 60)):
        ans = await http.call(i % 2, "POST", f"/admin/withdrawals/{wid}/reject", ADMIN, data=raw)
        assert ans.status in {200, 400, 409, 413, 422}, (raw[:200], ans.status, ans.body)
        if ans.status == 200:
            assert _valid_reason(obj), raw[:200]
            rejected += 1
    assert rejected <= 1

    for i, value in enumerate(drawn(json_values, 30)):
        raw = encode(value, "raw")
        ans = await http.call(i % 2, "POST", f"/admin/withdrawals/{wid}/approve", ADMIN, data=raw)
        assert ans.status in {200, 400, 409, 413, 422}, (raw[:200], ans.status, ans.body)

    webhook_codes: set[Any] = set()
    for i, value in enumerate(drawn(json_values, 40)):
        event = {"id": f"evt_{i}", "type": "transfer.reversed", "data": {"object": value}}
        raw = encode(event, "raw")
        ans = await http.call(i % 2, "POST", "/webhooks/stripe", signed(raw), data=raw)
        assert ans.status in {200, 400}, (raw[:200], ans.status, ans.body)
        webhook_codes.add(ans.body.get("error", {}).get("code") if ans.status == 400 else 200)
    # The signature held (else every answer would be invalid_signature; a body that is not
    # UTF-8 is refused as such): signed bodies were read, and some refused for what they say.
    assert {200, "invalid_payload"} <= webhook_codes, webhook_codes

    # Only the accepted requests moved the account (the rest changed nothing).
    listing = await http.get(1, f"/funded-accounts/{acct}/withdrawals", OWNER)
    ids = {w["id"] for w in listing.body["withdrawals"]}
    assert ids == {wid, *accepted}
    detail = await http.get(0, f"/funded-accounts/{acct}", OWNER)
    held = sum(
        Decimal(w["amount"])
        for w in listing.body["withdrawals"]
        if w["status"] in {"pending", "approved", "completed"}
    )
    assert Decimal(detail.body["withdrawable_amount"]) == Decimal("8000.00") - held
