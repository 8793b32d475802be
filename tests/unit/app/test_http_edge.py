"""The HTTP edge: one validation with the command parser, the error shape of 400/413, headers."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from domain.account import Reply
from domain.events import (
    ApproveWithdrawal,
    InvalidEvent,
    RejectWithdrawal,
    RequestWithdrawal,
    parse_command,
)
from views.accounts import _text_field, reply_answer
from views.admin import _reason
from views.http import MAX_BODY_BYTES, ApiError, api, read_json_object
from views.replay import request_key

WITHDRAWAL = f"wd_{'1' * 32}_{'2' * 16}"

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
REQUEST = RequestWithdrawal(
    "request:wd_1", "fa_1", "usr_1", "wd_1", 250_00, "stripe_connect", "acct_1X", AT
)
REJECT = RejectWithdrawal("reject:wd_1:x", "fa_1", "wd_1", "adm_1", "kyc", AT)

# Pieces whose joins cover the known mismatches: long text, padding, NUL, lone surrogates.
PIECES = ["", "acct_1", " ", "\t", "\x00", "\ud800", "é", "x" * 250, "x" * 499]


def _candidates() -> Iterator[str]:
    for n in (1, 2, 3):
        for parts in itertools.product(PIECES, repeat=n):
            yield "".join(parts)


def _parses(wire: dict[str, Any]) -> Any | None:
    try:
        return parse_command(wire)
    except InvalidEvent:
        return None


@pytest.mark.parametrize(
    ("field", "code"),
    [("destination", "invalid_destination"), ("payment_method", "unsupported_payment_method")],
)
def test_what_the_withdraw_view_takes_the_parser_takes(field: str, code: str) -> None:
    for text in _candidates():
        try:
            taken = _text_field({field: text}, field, code)
        except ApiError as err:
            assert (err.status, err.code) == (422, code), repr(text)
            continue
        parsed = _parses({**REQUEST.to_wire(), field: taken})
        assert parsed is not None and getattr(parsed, field) == taken, repr(text)


def test_a_600_character_destination_is_refused_at_the_edge() -> None:
    with pytest.raises(ApiError) as caught:
        _text_field({"destination": "acct_" + "x" * 595}, "destination", "invalid_destination")
    assert (caught.value.status, caught.value.code) == (422, "invalid_destination")
    with pytest.raises(ApiError) as caught:
        _text_field({"destination": 7}, "destination", "invalid_destination")
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")


def test_what_the_reject_view_takes_the_parser_takes_unchanged() -> None:
    for text in _candidates():
        try:
            reason = _reason({"reason": text})
        except ApiError as err:
            assert (err.status, err.code) == (422, "invalid_reason"), repr(text)
            continue
        parsed = _parses({**REJECT.to_wire(), "reason": reason})
        # The same reason on both sides: the fingerprint and rejection_reason agree.
        assert isinstance(parsed, RejectWithdrawal) and parsed.reason == reason, repr(text)


def test_a_reject_reason_with_surrounding_space_is_that_reason() -> None:
    assert _reason({"reason": "kyc "}) == "kyc"
    assert _reason({"reason": "\n documents missing \t"}) == "documents missing"
    for bad in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}):
        with pytest.raises(ApiError) as caught:
            _reason(bad)
        assert (caught.value.status, caught.value.code) == (422, "invalid_reason")
    with pytest.raises(ApiError) as caught:
        _reason({"reason": 5})
    assert caught.value.status == 400


def test_an_admin_id_from_a_valid_token_parses() -> None:
    # app.auth applies the parser's check_id to `sub`; the longest accepted one parses here.
    wire = ApproveWithdrawal("approve:wd_1:x", "fa_1", "wd_1", "a" * 200, AT).to_wire()
    assert _parses(wire) is not None
    assert _parses({**wire, "admin_id": "a" * 201}) is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("invalid_request", 400),
        ("idempotency_key_reused", 409),
        ("not_pending", 409),
        ("unknown_withdrawal", 404),
        ("too_many_open_withdrawals", 422),
        ("exceeds_withdrawable", 422),
    ],
)
def test_refused_replies_map_to_the_contract_statuses(code: str, status: int) -> None:
    answered, body = reply_answer(Reply(accepted=False, code=code, message="why"))
    assert answered == status and body == {"error": {"code": code, "message": "why"}}


class _Headers:
    """Only the headers: aiohttp hands header bytes that are not UTF-8 over as surrogate escapes,
    which its request factory for tests cannot encode."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


@pytest.mark.parametrize("key", ["k\x00", "\x00", "k\udcff"])
def test_idempotency_keys_holding_nul_or_undecodable_bytes_are_400(key: str) -> None:
    with pytest.raises(ApiError) as caught:
        request_key(_Headers({"Idempotency-Key": key}))  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.code) == (400, "invalid_request")
    ok = make_mocked_request("POST", "/x", headers={"Idempotency-Key": "k-1 é"})
    assert request_key(ok) == "k-1 é"


@api
async def _ignores_body(self: Any, request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@api
async def _reads_json(self: Any, request: web.Request) -> web.Response:
    return web.json_response({"keys": sorted(await read_json_object(request))})


@pytest.fixture
async def client() -> Any:
    app = web.Application()

    async def ignores(request: web.Request) -> web.Response:
        return await _ignores_body(None, request)

    async def reads(request: web.Request) -> web.Response:
        return await _reads_json(None, request)

    app.router.add_post("/ignores", ignores)
    app.router.add_post("/reads", reads)
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize("path", ["/ignores", "/reads"])
async def test_a_body_over_1_mib_is_413_in_the_error_shape(client: TestClient, path: str) -> None:
    resp = await client.post(path, data=b" " * (MAX_BODY_BYTES + 1))
    assert resp.status == 413
    body = await resp.json()
    assert body["error"]["code"] == "payload_too_large" and body["error"]["message"]
    # Exactly 1 MiB is not over it (and whitespace around a JSON object is JSON).
    at_limit = b"{}" + b" " * (MAX_BODY_BYTES - 2)
    assert (await client.post(path, data=at_limit)).status == 200


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"destination": "acct_1\u0000"}',
        rb'{"amount": "100", "x": ["\ud800"]}',
        rb'{"\udfff": 1}',
        b'{"a":' * 100 + b"{}" + b"}" * 100,
        b"[" * 200_000 + b"]" * 200_000,
        b'{"amount": 1' + b"0" * 5000 + b"}",
        b'{"amount": 1e99999999999999999999999999}',
    ],
)
async def test_unfit_bodies_are_400_invalid_request(client: TestClient, raw: bytes) -> None:
    resp = await client.post("/reads", data=raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "transfer_id", ["tr_1\u0000", "tr_\ud800", _deep(40)], ids=["nul", "lone-surrogate", "deep"]
)
async def test_a_signed_webhook_with_unfit_text_is_400_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, transfer_id: Any
) -> None:
    from app.settings import Settings
    from tests.unit.app.test_http_waits import _FakeFF, _FakeRequest, _Never, _signature, _webhook
    from views import system

    monkeypatch.setattr(system, "WEBHOOK_SEND_TIMEOUT_SECONDS", 0.5)
    post = _webhook(_FakeFF(Settings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_unit"}), _Never()))
    event = {
        "id": "evt_unit",
        "object": "event",
        "type": "transfer.reversed",
        "created": 1764000000,
        "data": {"object": {"id": transfer_id, "metadata": {"withdrawal_id": WITHDRAWAL}}},
    }
    payload = json.dumps(event)  # ASCII: "\u0000" and "\ud800" as JSON escapes
    request = _FakeRequest(
        payload.encode(), {"Stripe-Signature": _signature(payload, "whsec_unit")}
    )
    resp = await post(request)
    assert resp.status == 400  # at once: the producer here never takes anything
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"]["code"] == "invalid_request"


async def test_a_signed_webhook_nested_past_the_recursion_limit_is_400() -> None:
    from app.settings import Settings
    from tests.unit.app.test_http_waits import _FakeFF, _FakeRequest, _Never, _signature, _webhook

    post = _webhook(_FakeFF(Settings.from_env({"STRIPE_WEBHOOK_SECRET": "whsec_unit"}), _Never()))
    payload = '{"id": "evt_1", "type": "transfer.reversed", "x": ' + "[" * 50_000 + "]" * 50_000
    payload += "}"
    request = _FakeRequest(
        payload.encode(), {"Stripe-Signature": _signature(payload, "whsec_unit")}
    )
    resp = await post(request)
    assert resp.status == 400
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body)["error"]["code"] == "invalid_request"


def _reversal_event(**changes: Any) -> dict[str, Any]:
    transfer = {
        "id": "tr_1",
        "amount": 1000_00,
        "amount_reversed": 100_00,
        "metadata": {"withdrawal_id": WITHDRAWAL},
    }
    event = {"id": "evt_1", "type": "transfer.reversed", "created": 1764000000}
    event["data"] = {"object": {**transfer, **changes.pop("transfer", {})}}
    return {**event, **changes}


@pytest.mark.parametrize(
    "event",
    [
        _reversal_event(data=[1]),
        _reversal_event(data={"object": "tr_1"}),
        _reversal_event(data={"object": [1, 2]}),
        _reversal_event(id=7),
        _reversal_event(transfer={"id": {"x": 1}}),
        _reversal_event(transfer={"id": "t" * 5000}),
        _reversal_event(transfer={"amount_reversed": "100"}),
        _reversal_event(transfer={"amount_reversed": 0}),
    ],
)
def test_an_unusable_transfer_reversed_is_refused_by_name(event: dict[str, Any]) -> None:
    from views.system import reversal_command

    with pytest.raises(InvalidEvent):
        reversal_command(event, now=1764000000.0)


@pytest.mark.parametrize("created", ["1764000000", 10**30, -5, True, None, 1.5])
def test_a_reversal_with_an_unusable_created_takes_the_time_it_arrived(created: Any) -> None:
    from views.system import reversal_command

    cmd = reversal_command(_reversal_event(created=created), now=1764000123.0)
    assert cmd is not None and cmd.at == datetime.fromtimestamp(1764000123, UTC)
    assert cmd.amount_reversed_cents == 100_00 and cmd.account_id == f"fa_{'1' * 32}"


@pytest.mark.parametrize(
    "event",
    [
        {**_reversal_event(), "type": "transfer.created"},
        _reversal_event(transfer={"metadata": {"withdrawal_id": "wd_free"}}),
        _reversal_event(transfer={"metadata": ["x"]}),
        _reversal_event(transfer={"metadata": {"withdrawal_id": 5}}),
    ],
)
def test_events_of_other_types_or_withdrawals_are_not_handled(event: dict[str, Any]) -> None:
    from views.system import reversal_command

    assert reversal_command(event, now=1764000000.0) is None
