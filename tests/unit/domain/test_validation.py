"""The shared text checks (domain/validation.py) and the parsers that use them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.events import (
    InvalidEvent,
    RejectWithdrawal,
    RequestWithdrawal,
    parse_assessment,
    parse_command,
    parse_trade,
)
from domain.tiers import InvalidTier, default_catalog, parse_tier
from domain.validation import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    InvalidText,
    check_id,
    check_reason,
    check_text,
    poison_in,
    quoted,
)

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
POISON = ["\x00", "a\x00b", "\ud800", "x\udfff", "\udbff\udc00"[::-1]]


def test_poison_in_names_nul_and_lone_surrogates() -> None:
    assert poison_in("fine \u00e9 \U0001f600") is None
    assert poison_in("a\x00") == "holds NUL (U+0000)"
    assert poison_in("\ud800") == "holds a lone surrogate (U+D800)"
    assert poison_in("\udfff") == "holds a lone surrogate (U+DFFF)"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("usr_42", True),
        ("x" * MAX_ID_LENGTH, True),
        ("x" * (MAX_ID_LENGTH + 1), False),
        ("", False),
        (" usr", False),
        ("usr ", False),
        ("usr\n", False),
        *((p, False) for p in POISON),
    ],
)
def test_check_id(text: str, ok: bool) -> None:
    if ok:
        assert check_id(text) == text
    else:
        with pytest.raises(InvalidText):
            check_id(text)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("", True),
        (" padded is fine ", True),
        ("x" * MAX_TEXT_LENGTH, True),
        ("x" * (MAX_TEXT_LENGTH + 1), False),
        *((p, False) for p in POISON),
    ],
)
def test_check_text(text: str, ok: bool) -> None:
    if ok:
        assert check_text(text) == text
    else:
        with pytest.raises(InvalidText):
            check_text(text)


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("kyc", "kyc"),
        ("kyc ", "kyc"),
        ("  documents missing\n", "documents missing"),
        ("x" * MAX_TEXT_LENGTH + " ", "x" * MAX_TEXT_LENGTH),
        ("", None),
        ("   ", None),
        ("x" * (MAX_TEXT_LENGTH + 1), None),
        *((p, None) for p in POISON),
    ],
)
def test_check_reason_strips_then_bounds(text: str, stripped: str | None) -> None:
    if stripped is not None:
        assert check_reason(text) == stripped
    else:
        with pytest.raises(InvalidText):
            check_reason(text)


# --- the parsers ---------------------------------------------------------------------------

OPENED: dict[str, Any] = {
    "event_id": "t-1",
    "type": "position_opened",
    "account_id": "fa_1",
    "position_id": "p-1",
    "symbol": "EURUSD",
    "side": "long",
    "quantity": "2.5",
    "price": "1.0850",
    "notional": "271250.00",
    "occurred_at": "2026-11-23T10:00:00Z",
}
ASSESSMENT: dict[str, Any] = {
    "event_id": "e-81",
    "assessment_id": "asm_7",
    "user_id": "usr_42",
    "tier_id": "funded-100k",
    "status": "passed",
    "completed_at": "2026-11-23T10:00:00Z",
}
REQUEST = RequestWithdrawal("c-1", "fa_1", "usr_42", "wd_1", 250_00, "stripe_connect", "acct_1", AT)
REJECT = RejectWithdrawal("c-3", "fa_1", "wd_1", "adm_1", "documents missing", AT)


@pytest.mark.parametrize("bad", POISON)
@pytest.mark.parametrize("field", ["event_id", "account_id", "position_id", "symbol"])
def test_trade_strings_refuse_poison(field: str, bad: str) -> None:
    # A lone surrogate in event_id used to pass here and raise out of uuid5 in the agent.
    with pytest.raises(InvalidEvent, match=f"invalid_field: {field} holds"):
        parse_trade({**OPENED, field: f"t{bad}"})


@pytest.mark.parametrize("bad", POISON)
@pytest.mark.parametrize("field", ["event_id", "assessment_id", "user_id", "tier_id"])
def test_assessment_strings_refuse_poison(field: str, bad: str) -> None:
    with pytest.raises(InvalidEvent, match=f"invalid_field: {field} holds"):
        parse_assessment({**ASSESSMENT, field: bad + "x"})


@pytest.mark.parametrize("bad", POISON)
@pytest.mark.parametrize("field", ["tier_id", "name"])
def test_tier_strings_refuse_poison(field: str, bad: str) -> None:
    wire = default_catalog()[0].to_wire()
    with pytest.raises(InvalidTier, match=f"invalid_field: {field} holds"):
        parse_tier({**wire, field: "x" + bad})


@pytest.mark.parametrize("bad", POISON)
@pytest.mark.parametrize("field", ["payment_method", "destination", "user_id"])
def test_request_strings_refuse_poison(field: str, bad: str) -> None:
    with pytest.raises(InvalidEvent, match=f"invalid_field: {field}"):
        parse_command({**REQUEST.to_wire(), field: "acct_" + bad})


def test_request_text_bounds_are_the_shared_ones() -> None:
    longest = "x" * MAX_TEXT_LENGTH
    command = parse_command({**REQUEST.to_wire(), "destination": longest})
    assert isinstance(command, RequestWithdrawal) and command.destination == longest
    for field in ("destination", "payment_method"):
        with pytest.raises(InvalidEvent, match=f"{field} is longer than {MAX_TEXT_LENGTH}"):
            parse_command({**REQUEST.to_wire(), field: longest + "x"})


def test_a_reject_reason_is_stripped_as_the_http_view_strips_it() -> None:
    command = parse_command({**REJECT.to_wire(), "reason": "  kyc missing "})
    assert isinstance(command, RejectWithdrawal) and command.reason == "kyc missing"
    for bad in ("", "  ", "x" * (MAX_TEXT_LENGTH + 1), "kyc\x00"):
        with pytest.raises(InvalidEvent, match="invalid_field: reason"):
            parse_command({**REJECT.to_wire(), "reason": bad})


@pytest.mark.parametrize(
    "message",
    ["insufficient funds ", "\x00bad\ud800", "   ", "x" * 5000, "tab\t", "é ok"],
)
def test_a_quoted_refusal_always_parses_as_the_payout_failed_reason(message: str) -> None:
    """A Stripe refusal message is quoted in PayoutFailed: whatever Stripe says, the command the
    payout agent sends is one the account agent's parser takes (never a dead letter that leaves
    the withdrawal approved)."""
    from domain.events import MAX_PAYOUT_REASON_LENGTH, PayoutFailed, parse_command

    reason = quoted(
        f"stripe_refused: x: {message}", max_length=MAX_PAYOUT_REASON_LENGTH, fallback="refused"
    )
    cmd = PayoutFailed("payout-result:wd_1", "fa_1", "wd_1", reason, AT)
    assert parse_command(cmd.to_wire()) == cmd
    assert quoted("  ", max_length=10, fallback="refused") == "refused"
