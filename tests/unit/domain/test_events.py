from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.events import (
    ActivateAccount,
    ApproveWithdrawal,
    AssessmentCompleted,
    Command,
    InvalidEvent,
    PayoutFailed,
    PayoutSucceeded,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RejectWithdrawal,
    RequestWithdrawal,
    ReverseTransfer,
    account_id_for,
    activation_for,
    format_ts,
    parse_assessment,
    parse_command,
    parse_message,
    parse_trade,
    parse_ts,
)
from domain.timestamps import InvalidTimestamp
from tests.unit.domain.story import T0, tier

ASSESSMENT: dict[str, Any] = {
    "event_id": "e-81",
    "assessment_id": "asm_7",
    "user_id": "usr_42",
    "tier_id": "funded-100k",
    "status": "passed",
    "completed_at": "2026-11-23T10:00:00Z",
}
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
    "occurred_at": "2026-11-23T10:01:00Z",
}
UPDATED: dict[str, Any] = {
    "event_id": "t-2",
    "type": "position_updated",
    "account_id": "fa_1",
    "position_id": "p-1",
    "unrealized_pnl": "-1250.00",
    "notional": "270000.00",
    "occurred_at": "2026-11-23T10:02:00Z",
}
CLOSED: dict[str, Any] = {
    "event_id": "t-3",
    "type": "position_closed",
    "account_id": "fa_1",
    "position_id": "p-1",
    "realized_pnl": "-900.00",
    "occurred_at": "2026-11-23T10:03:00Z",
}


# --- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23t10:00:00z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T12:00:00+02:00", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T05:30:00-04:30", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T10:00:00.25Z", datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-23T10:00:00.123456789Z", datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps_become_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_ts(text)
    assert parsed == expected
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T10:00:00",  # naive
        "2026-11-23",
        "2026-11-23 10:00:00Z",
        "2026-13-23T10:00:00Z",
        "2026-11-23T25:00:00Z",
        "2026-11-23T10:00:60Z",
        "yesterday",
        "",
        1700000000,
        None,
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    ],
)
def test_bad_timestamps_are_refused(value: object) -> None:
    with pytest.raises(InvalidTimestamp):
        parse_ts(value)


def test_timestamps_are_written_in_utc_with_z() -> None:
    assert format_ts(T0) == "2026-11-23T10:00:00Z"
    assert format_ts(parse_ts("2026-11-23T12:00:00+02:00")) == "2026-11-23T10:00:00Z"
    with_micros = datetime(2026, 11, 23, 10, 0, 0, 5, tzinfo=UTC)
    assert format_ts(with_micros) == "2026-11-23T10:00:00.000005Z"
    assert parse_ts(format_ts(with_micros)) == with_micros
    assert format_ts(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        format_ts(datetime(2026, 11, 23))


# --- assessment.completed


def test_parse_the_contracts_assessment() -> None:
    event = parse_assessment(ASSESSMENT)
    assert event == AssessmentCompleted("e-81", "asm_7", "usr_42", "funded-100k", "passed", T0)
    assert parse_assessment(event.to_wire()) == event


def test_completed_at_may_be_absent_or_null() -> None:
    missing = {k: v for k, v in ASSESSMENT.items() if k != "completed_at"}
    assert parse_assessment(missing).completed_at is None
    assert parse_assessment({**ASSESSMENT, "completed_at": None}).completed_at is None
    assert parse_assessment({**ASSESSMENT, "completed_at": None}).to_wire()["completed_at"] is None


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([], "invalid_event"),
        ({**ASSESSMENT, "status": "maybe"}, "invalid_field: status must be one of passed, failed"),
        ({**ASSESSMENT, "user_id": 42}, "invalid_field: user_id must be a string"),
        ({**ASSESSMENT, "assessment_id": "x" * 201}, "invalid_field: assessment_id is longer"),
        ({k: v for k, v in ASSESSMENT.items() if k != "tier_id"}, "missing_field: tier_id"),
        ({**ASSESSMENT, "completed_at": "2026-11-23T10:00:00"}, "invalid_field: completed_at"),
    ],
)
def test_invalid_assessments(obj: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_assessment(obj)
    assert caught.value.reason.startswith(reason)


def test_account_id_is_derived_from_the_assessment() -> None:
    assert account_id_for("asm_7") == account_id_for("asm_7")
    assert account_id_for("asm_7") != account_id_for("asm_8")
    assert account_id_for("asm_7").startswith("fa_")


def test_activation_for_a_passed_assessment_is_the_same_on_every_delivery() -> None:
    terms = tier()
    first = activation_for(parse_assessment(ASSESSMENT), terms)
    again = activation_for(parse_assessment({**ASSESSMENT, "event_id": "e-99"}), terms)
    assert first is not None and first == again
    assert first.account_id == account_id_for("asm_7")
    assert first.activated_at == T0 and first.user_id == "usr_42" and first.tier == terms


def test_no_activation_for_failed_or_incomplete_assessments() -> None:
    terms = tier()
    assert activation_for(parse_assessment({**ASSESSMENT, "status": "failed"}), terms) is None
    assert activation_for(parse_assessment({**ASSESSMENT, "completed_at": None}), terms) is None


# --- trades


def test_parse_the_contracts_trade_events() -> None:
    opened = parse_trade(OPENED)
    assert opened == PositionOpened(
        "t-1",
        "fa_1",
        "p-1",
        "EURUSD",
        "long",
        Decimal("2.5"),
        Decimal("1.0850"),
        271250_00,
        datetime(2026, 11, 23, 10, 1, tzinfo=UTC),
    )
    updated = parse_trade(UPDATED)
    assert updated == PositionUpdated(
        "t-2", "fa_1", "p-1", -1250_00, 270000_00, datetime(2026, 11, 23, 10, 2, tzinfo=UTC)
    )
    closed = parse_trade(CLOSED)
    assert closed == PositionClosed(
        "t-3", "fa_1", "p-1", -900_00, datetime(2026, 11, 23, 10, 3, tzinfo=UTC)
    )
    for event, wire in ((opened, OPENED), (updated, UPDATED), (closed, CLOSED)):
        assert event.to_wire() == wire
        assert parse_trade(event.to_wire()) == event


def test_notional_on_an_update_is_optional() -> None:
    without = {k: v for k, v in UPDATED.items() if k != "notional"}
    event = parse_trade(without)
    assert isinstance(event, PositionUpdated) and event.notional_cents is None
    assert "notional" not in event.to_wire()
    assert parse_trade({**UPDATED, "notional": None}) == event


def test_json_numbers_are_accepted_for_amounts_and_sizes() -> None:
    event = parse_trade({**OPENED, "quantity": Decimal("2.5"), "notional": 271250})
    assert isinstance(event, PositionOpened)
    assert event.notional_cents == 271250_00 and event.quantity == Decimal("2.5")


def test_unknown_fields_are_ignored() -> None:
    assert parse_trade({**CLOSED, "venue": "lmax"}) == parse_trade(CLOSED)


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("[]", "invalid_event"),
        ({**OPENED, "type": "position_flipped"}, "unknown_type"),
        ({**OPENED, "type": None}, "unknown_type"),
        ({k: v for k, v in OPENED.items() if k != "type"}, "missing_field: type"),
        ({**OPENED, "quantity": "-2.5"}, "invalid_field: quantity must be a positive decimal"),
        ({**OPENED, "quantity": "0"}, "invalid_field: quantity must be a positive decimal"),
        ({**OPENED, "price": "abc"}, "invalid_field: price must be a positive decimal"),
        ({**OPENED, "side": "flat"}, "invalid_field: side must be one of long, short"),
        ({**OPENED, "notional": "-1.00"}, "invalid_field: notional must not be negative"),
        ({**OPENED, "notional": "1.005"}, "invalid_field: notional"),
        ({**OPENED, "symbol": ""}, "invalid_field: symbol"),
        ({**OPENED, "event_id": None}, "invalid_field: event_id must be a string"),
        ({**UPDATED, "unrealized_pnl": "NaN"}, "invalid_field: unrealized_pnl"),
        ({**UPDATED, "notional": "Infinity"}, "invalid_field: notional"),
        ({**CLOSED, "realized_pnl": 1e300}, "invalid_field: realized_pnl"),
        ({**CLOSED, "realized_pnl": True}, "invalid_field: realized_pnl"),
        ({**CLOSED, "occurred_at": "2026-11-23 10:03"}, "invalid_field: occurred_at"),
        ({k: v for k, v in CLOSED.items() if k != "realized_pnl"}, "missing_field: realized_pnl"),
    ],
)
def test_invalid_trade_events(obj: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_trade(obj)
    assert caught.value.reason.startswith(reason), caught.value.reason


# --- commands

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
COMMANDS: list[Command] = [
    ActivateAccount("act-1", "fa_1", "usr_42", "asm_7", tier(), T0),
    RequestWithdrawal("c-1", "fa_1", "usr_42", "wd_1", 250_00, "stripe_connect", "acct_1X", AT),
    ApproveWithdrawal("c-2", "fa_1", "wd_1", "adm_1", AT),
    RejectWithdrawal("c-3", "fa_1", "wd_1", "adm_1", "documents missing", AT),
    PayoutSucceeded("c-4", "fa_1", "wd_1", "tr_123", AT),
    PayoutFailed("c-5", "fa_1", "wd_1", "account_closed: the destination is closed", AT),
    ReverseTransfer("c-6", "fa_1", "wd_1", "tr_123", 2500_00, AT),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip_through_the_wire(command: Command) -> None:
    wire = command.to_wire()
    assert wire["type"] == command.TYPE
    assert parse_command(wire) == command
    assert parse_message(wire) == command
    assert command.occurred_at in (T0, AT)


def test_parse_message_tells_trades_from_commands() -> None:
    assert isinstance(parse_message(OPENED), PositionOpened)
    with pytest.raises(InvalidEvent, match="unknown_type"):
        parse_message({**OPENED, "type": "explode"})


def test_a_request_keeps_unsupported_methods_for_the_policy_to_refuse() -> None:
    wire = {**COMMANDS[1].to_wire(), "payment_method": "paypal", "destination": "", "amount": "1"}
    command = parse_command(wire)
    assert isinstance(command, RequestWithdrawal)
    assert command.payment_method == "paypal" and command.destination == ""
    assert command.amount_cents == 100


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (None, "invalid_event"),
        ({"type": "self_destruct"}, "unknown_type"),
        ({**COMMANDS[0].to_wire(), "tier": "funded-100k"}, "invalid_field: tier must be an object"),
        ({**COMMANDS[0].to_wire(), "tier": {"tier_id": "x"}}, "invalid_field: tier: missing_field"),
        ({**COMMANDS[1].to_wire(), "amount": "1.005"}, "invalid_field: amount"),
        ({**COMMANDS[1].to_wire(), "payment_method": 7}, "invalid_field: payment_method"),
        ({**COMMANDS[1].to_wire(), "destination": "a" * 501}, "invalid_field: destination"),
        ({**COMMANDS[2].to_wire(), "at": "soon"}, "invalid_field: at"),
        ({**COMMANDS[3].to_wire(), "reason": ""}, "invalid_field: reason"),
        ({**COMMANDS[3].to_wire(), "reason": "x" * 501}, "invalid_field: reason"),
        ({**COMMANDS[4].to_wire(), "stripe_transfer_id": None}, "invalid_field: stripe"),
        ({**COMMANDS[5].to_wire(), "reason": 5}, "invalid_field: reason"),
        ({**COMMANDS[6].to_wire(), "withdrawal_id": ""}, "invalid_field: withdrawal_id"),
    ],
)
def test_invalid_commands(obj: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_command(obj)
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert caught.value.code == reason.split(":")[0]


def _format_ts_by_fields(moment: datetime) -> str:
    """The writing of CONTRACT section 2 spelled out field by field (the oracle)."""
    utc = moment.astimezone(UTC)
    text = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        f"T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    )
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
        ),
    )
)
def test_timestamps_are_written_field_by_field_and_read_back(moment: datetime) -> None:
    text = format_ts(moment)
    assert text == _format_ts_by_fields(moment)
    assert parse_ts(text) == moment
    assert parse_ts(text) is parse_ts(text)  # a stored instant is parsed once
