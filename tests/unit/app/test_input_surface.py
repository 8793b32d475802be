"""The whole input surface of the agents, under arbitrary input (hardening issue, "Also").

Every consumed topic gets arbitrary JSON and bytes: valid inputs with one field replaced by any
JSON value (NUL, lone surrogates, huge and deeply nested values, wrong types), fields dropped,
keys repeated, whole values replaced, bytes that are not UTF-8. Each agent runs its real code
(`AccountProcessor.process`, `activate_one`, `validate_one`, `PayoutWorker.handle`, the sink's
`collapse`) over in-memory tables and a recording producer. For every input:

- nothing raises out of the agent;
- state (the three account tables) changes only when the input is valid (it parses, and its
  key is its account), and never when it was dead-lettered;
- a command's waiter (an HTTP request) is answered at once, never left to time out;
- a payout goes out only for a withdrawal the account approved, for the amount and to the
  destination the account holds, whatever the request says.

The POST routes get the same treatment against two real workers in
tests/integration/test_http_input.py.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.accounts import AccountProcessor
from agents.activation import activate_one
from agents.payouts import PayoutWorker
from agents.tiers import validate_one
from app.codec import WireError, loads_object
from app.faust_app import FundedFlow
from app.settings import Settings
from app.sink_db import SNAPSHOT, SinkRecord, collapse
from app.stripe_payouts import TransferMade
from app.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNTS_TABLE,
    APPLIED_IDS_TABLE,
    ASSESSMENT_COMPLETED,
    FACT_TOPICS,
    PAYOUT_REQUESTS,
    TIERS,
    TRADES,
    WITHDRAWAL_ARCHIVE_TABLE,
    TopicNames,
    dlq,
)
from domain.events import (
    ActivateAccount,
    InvalidEvent,
    account_id_for,
    parse_assessment,
    parse_command,
    parse_trade,
)
from domain.tiers import InvalidTier, parse_tier
from domain.withdrawals import APPROVED
from tables.accounts import load
from tests.unit.domain.story import tier

ACCOUNT = account_id_for("asm_surface")
USER = "usr_surface"
AT = "2026-11-23T10:00:00Z"
TIER_WIRE = tier().to_wire()

# --- arbitrary JSON ------------------------------------------------------------------------------

POISON = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "",
    " ",
    " padded ",
    "é",
    "x" * 600,
    "1e2",
    "1e400",
    "NaN",
    "-0.001",
    "100.00",
    "99999999999999999999.99",
    ACCOUNT,
    "stripe_connect",
]
# Any code point, surrogates included (Hypothesis leaves category Cs out unless told).
ANY_CHAR = st.characters(codec=None, categories=None)
texts = st.sampled_from(POISON) | st.text(ANY_CHAR, max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)


def deep(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


big_values = st.sampled_from(
    [
        deep(40),
        deep(33),
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        "y" * 200_000,
    ]
)


def encode(value: Any, how: str) -> bytes:
    """JSON text of `value`; `raw` writes surrogates as their (invalid) UTF-8 bytes."""
    if how == "ascii":
        return json.dumps(value, ensure_ascii=True, default=str).encode()
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.encode("utf-8", errors="surrogatepass")


@st.composite
def hostile(draw: st.DrawFn, template: dict[str, Any]) -> tuple[Any, bytes]:
    """A value built from `template` (a valid input), and its bytes."""
    obj: Any = copy.deepcopy(template)
    how = draw(st.sampled_from(["keep", "replace", "replace", "drop", "add", "whole", "big"]))
    if how == "replace":
        key = draw(st.sampled_from(sorted(obj)))
        obj[key] = draw(json_values | big_values)
    elif how == "drop":
        obj.pop(draw(st.sampled_from(sorted(obj))))
    elif how == "add":
        obj[draw(texts)] = draw(json_values)
    elif how == "whole":
        obj = draw(json_values)
    elif how == "big":
        obj[draw(st.sampled_from(sorted(obj)))] = draw(big_values)
    form = draw(st.sampled_from(["ascii", "raw", "duplicate", "bytes", "number"]))
    if form == "bytes":
        return obj, draw(st.binary(max_size=64))
    if form == "number":
        # JSON numbers a float cannot hold, written out as text.
        literal = draw(st.sampled_from(["1e400", "1" + "0" * 5000, "-1e-400", "1.0e2", "1E-2"]))
        key = draw(st.sampled_from(sorted(template)))
        body = encode({k: v for k, v in template.items() if k != key}, "ascii")
        return obj, body[:-1] + (b"," if len(body) > 2 else b"") + f'"{key}":{literal}}}'.encode()
    if form == "duplicate" and isinstance(obj, dict) and obj:
        key = draw(st.sampled_from(sorted(obj)))
        again = draw(json_values)
        body = encode(obj, "ascii")
        return obj, body[:-1] + b"," + encode(key, "ascii") + b":" + encode(again, "ascii") + b"}"
    try:
        return obj, encode(obj, "raw" if form == "raw" else "ascii")
    except (TypeError, ValueError):
        return obj, b"{"


# --- in-memory tables and a recording producer ---------------------------------------------------


class MemoryTable:
    """What the agents use of a Faust table: `data` (the store), `[]=` and `get`."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = copy.deepcopy(value)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes


class RecordingTopic:
    def __init__(self, name: str, sent: list[Sent]) -> None:
        self.name = name
        self.sent = sent

    async def send(
        self, *, key: bytes | None = None, value: bytes = b"", force: bool = False, **_: Any
    ) -> asyncio.Future[Any]:
        assert isinstance(value, bytes)
        self.sent.append(Sent(self.name, key, value))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Event:
    message: Message


@dataclass
class Rig:
    ff: FundedFlow
    sent: list[Sent]
    loop: asyncio.AbstractEventLoop
    offsets: dict[str, int] = field(default_factory=dict)

    def tables(self) -> str:
        """The three account tables, as one comparable text."""
        return json.dumps(
            {
                n: self.ff.extras[n].data
                for n in (ACCOUNTS_TABLE, APPLIED_IDS_TABLE, WITHDRAWAL_ARCHIVE_TABLE)
            },
            sort_keys=True,
            default=str,
        )

    def message(self, base: str, key: bytes | None, value: bytes | None) -> Event:
        topic = self.ff.names.name(base)
        self.offsets[topic] = self.offsets.get(topic, -1) + 1
        return Event(Message(topic, 0, self.offsets[topic], key, value))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


def new_rig() -> Rig:
    sent: list[Sent] = []
    names = TopicNames("")
    ff = FundedFlow(app=None, settings=Settings.from_env({}), names=names)  # type: ignore[arg-type]
    bases = [TIERS, ASSESSMENT_COMPLETED, TRADES, ACCOUNT_COMMANDS, PAYOUT_REQUESTS]
    for base in [*bases, *(dlq(b) for b in bases), *FACT_TOPICS, "fundedflow.account-snapshots"]:
        ff.topics[base] = RecordingTopic(base, sent)  # type: ignore[assignment]
    for name in (ACCOUNTS_TABLE, APPLIED_IDS_TABLE, WITHDRAWAL_ARCHIVE_TABLE):
        ff.extras[name] = MemoryTable()
    return Rig(ff, sent, asyncio.new_event_loop())


# Valid inputs of every kind the account agent reads (the templates the strategies bend).
TRADE_TEMPLATES = [
    {
        "event_id": "t-open",
        "type": "position_opened",
        "account_id": ACCOUNT,
        "position_id": "p-9",
        "symbol": "EURUSD",
        "side": "long",
        "quantity": "1",
        "price": "1.08",
        "notional": "2000.00",
        "occurred_at": AT,
    },
    {
        "event_id": "t-upd",
        "type": "position_updated",
        "account_id": ACCOUNT,
        "position_id": "p-9",
        "unrealized_pnl": "-10.00",
        "notional": "1990.00",
        "occurred_at": AT,
    },
    {
        "event_id": "t-close",
        "type": "position_closed",
        "account_id": ACCOUNT,
        "position_id": "p-9",
        "realized_pnl": "5.00",
        "occurred_at": AT,
    },
]
COMMAND_TEMPLATES = [
    {
        "type": "request_withdrawal",
        "event_id": "request:wd-new",
        "account_id": ACCOUNT,
        "user_id": USER,
        "withdrawal_id": "wd-new",
        "amount": "150.00",
        "payment_method": "stripe_connect",
        "destination": "acct_1Surface",
        "requested_at": AT,
    },
    {
        "type": "approve_withdrawal",
        "event_id": "approve:wd-big",
        "account_id": ACCOUNT,
        "withdrawal_id": "wd-big",
        "admin_id": "adm_1",
        "at": AT,
    },
    {
        "type": "reject_withdrawal",
        "event_id": "reject:wd-big",
        "account_id": ACCOUNT,
        "withdrawal_id": "wd-big",
        "admin_id": "adm_1",
        "reason": "kyc",
        "at": AT,
    },
    {
        "type": "payout_succeeded",
        "event_id": "payout-result:wd-small",
        "account_id": ACCOUNT,
        "withdrawal_id": "wd-small",
        "stripe_transfer_id": "tr_1",
        "at": AT,
    },
    {
        "type": "payout_failed",
        "event_id": "payout-result:wd-small",
        "account_id": ACCOUNT,
        "withdrawal_id": "wd-small",
        "reason": "insufficient_funds",
        "at": AT,
    },
    {
        "type": "reverse_transfer",
        "event_id": "evt_reversal",
        "account_id": ACCOUNT,
        "withdrawal_id": "wd-small",
        "stripe_transfer_id": "tr_1",
        "amount_reversed": "50.00",
        "at": AT,
    },
]
ACTIVATION = ActivateAccount(
    event_id="activate:asm_surface",
    account_id=ACCOUNT,
    user_id=USER,
    assessment_id="asm_surface",
    tier=tier(),
    activated_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
).to_wire()


def seeded() -> tuple[Rig, AccountProcessor]:
    """An active account with profit, a pending withdrawal (wd-big) and an approved one
    (wd-small) waiting for its payout."""
    rig = new_rig()
    processor = AccountProcessor(rig.ff)
    key = ACCOUNT.encode()

    def send(base: str, obj: dict[str, Any]) -> None:
        rig.run(processor.process(rig.message(base, key, json.dumps(obj).encode())))  # type: ignore[arg-type]

    send(ACCOUNT_COMMANDS, ACTIVATION)
    send(TRADES, {**TRADE_TEMPLATES[0], "event_id": "seed-open", "position_id": "p-0"})
    send(
        TRADES,
        {
            **TRADE_TEMPLATES[2],
            "event_id": "seed-close",
            "position_id": "p-0",
            "realized_pnl": "20000.00",
        },
    )
    for wid, amount in (("wd-big", "1500.00"), ("wd-small", "200.00")):
        send(
            ACCOUNT_COMMANDS,
            {
                **COMMAND_TEMPLATES[0],
                "event_id": f"request:{wid}",
                "withdrawal_id": wid,
                "amount": amount,
            },
        )
    state, _ = load(rig.ff.extras[ACCOUNTS_TABLE].get(ACCOUNT))
    assert state is not None
    assert state.withdrawals["wd-big"].status == "pending"
    assert state.withdrawals["wd-small"].status == APPROVED
    rig.sent.clear()
    return rig, processor


def plainly_unfit(raw: bytes) -> bool:
    """An oracle apart from the codec: plain `json` with a check of its own for what the
    contract refuses anywhere (NUL, lone surrogates, a key twice, deep nesting)."""
    bad = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal bad
        bad = bad or len({k for k, _ in items}) != len(items)
        return dict(items)

    try:
        value = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and not bad:
        node, depth = stack.pop()
        if isinstance(node, str):
            bad = "\x00" in node or any(0xD800 <= ord(c) <= 0xDFFF for c in node)
        elif isinstance(node, dict):
            bad = depth > 32
            stack.extend((x, depth + 1) for kv in node.items() for x in kv)
        elif isinstance(node, list):
            bad = depth > 32
            stack.extend((x, depth + 1) for x in node)
    return bad


def valid_account_input(base: str, raw: bytes, key: bytes | None) -> bool:
    try:
        obj = loads_object(raw)
        item = parse_trade(obj) if base == TRADES else parse_command(obj)
    except (WireError, InvalidEvent):
        return False
    return key == item.account_id.encode()


def claimed_id(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    claimed = obj.get("event_id") if isinstance(obj, dict) else None
    return claimed if isinstance(claimed, str) else None


FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the account agent -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def account_rig() -> tuple[Rig, AccountProcessor]:
    return seeded()


def account_inputs() -> st.SearchStrategy[tuple[str, Any, bytes, bytes | None]]:
    def of(base: str, templates: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
        return st.tuples(
            st.just(base),
            st.sampled_from(templates).flatmap(hostile),
            st.sampled_from([ACCOUNT.encode(), ACCOUNT.encode(), None, b"fa_other", b"\xff\xfe"]),
        ).map(lambda t: (t[0], t[1][0], t[1][1], t[2]))

    return of(TRADES, TRADE_TEMPLATES) | of(ACCOUNT_COMMANDS, COMMAND_TEMPLATES)


@FAST
@given(account_inputs())
def test_the_account_agent_takes_anything(
    account_rig: tuple[Rig, AccountProcessor], case: tuple[str, Any, bytes, bytes | None]
) -> None:
    rig, processor = account_rig
    base, _, raw, key = case
    before = rig.tables()
    rig.sent.clear()
    waiter: asyncio.Future[Any] | None = None
    claimed = claimed_id(raw)
    if base == ACCOUNT_COMMANDS and claimed is not None:
        waiter = rig.loop.create_future()
        processor.waiters.setdefault(claimed, []).append(waiter)
    rig.run(processor.process(rig.message(base, key, raw)))  # type: ignore[arg-type]
    valid = valid_account_input(base, raw, key)
    dead = [s for s in rig.sent if s.topic == dlq(base)]
    if not valid:
        assert rig.tables() == before, raw[:300]
        assert dead, "an invalid input must be dead-lettered"
        assert all(s.topic == dlq(base) for s in rig.sent), [s.topic for s in rig.sent]
    if dead:
        assert rig.tables() == before
        assert dead[0].value == raw  # the original bytes
    if plainly_unfit(raw):
        assert rig.tables() == before and dead, raw[:300]
    if waiter is not None:
        assert waiter.done(), (
            f"a waiting request must be answered at once: {base} key {key!r} "
            f"claimed {claimed!r} input {raw[:400]!r}"
        )
        processor.waiters.pop(claimed or "", None)


def test_a_waiter_on_an_empty_claimed_id_is_answered(
    account_rig: tuple[Rig, AccountProcessor],
) -> None:
    """The example Hypothesis found once in ~50 runs: a repeated `event_id` whose last value is
    the empty string. The agent dead-letters it and answers the id it claims, even "" (a
    falsy id was skipped before)."""
    rig, processor = account_rig
    body = json.dumps({**COMMAND_TEMPLATES[0], "withdrawal_id": "wd-empty"})
    raw = body[:-1].encode() + b',"event_id":""}'
    waiter: asyncio.Future[Any] = rig.loop.create_future()
    processor.waiters[""] = [waiter]
    rig.run(processor.process(rig.message(ACCOUNT_COMMANDS, ACCOUNT.encode(), raw)))  # type: ignore[arg-type]
    assert waiter.done()
    assert waiter.result().reply.code == "invalid_request"
    assert "" not in processor.waiters


def test_a_repeated_key_is_a_dead_letter_not_the_last_value(
    account_rig: tuple[Rig, AccountProcessor],
) -> None:
    """`{"amount": "150.00", "amount": "5000.00"}` is refused, not read as either amount."""
    rig, processor = account_rig
    body = json.dumps({**COMMAND_TEMPLATES[0], "event_id": "request:dup", "withdrawal_id": "dup"})
    raw = body[:-1].encode() + b',"amount":"5000.00"}'
    before = rig.tables()
    rig.sent.clear()
    rig.run(processor.process(rig.message(ACCOUNT_COMMANDS, ACCOUNT.encode(), raw)))  # type: ignore[arg-type]
    assert rig.tables() == before
    assert [s.topic for s in rig.sent] == [dlq(ACCOUNT_COMMANDS)]


# --- activation and the tier validator ----------------------------------------------------------


class Catalog:
    def get(self, tier_id: str) -> Any:
        return parse_tier(TIER_WIRE) if tier_id == TIER_WIRE["tier_id"] else None


ASSESSMENT = {
    "event_id": "e-81",
    "assessment_id": "asm_7",
    "user_id": "usr_42",
    "tier_id": TIER_WIRE["tier_id"],
    "status": "passed",
    "completed_at": AT,
}


@FAST
@given(hostile(ASSESSMENT), st.sampled_from([b"asm_7", None, b"\x00"]))
def test_activation_takes_anything(case: tuple[Any, bytes], key: bytes | None) -> None:
    rig = new_rig()
    _, raw = case
    rig.run(activate_one(rig.ff, Catalog(), rig.message(ASSESSMENT_COMPLETED, key, raw)))  # type: ignore[arg-type]
    commands = [s for s in rig.sent if s.topic == ACCOUNT_COMMANDS]
    others = {s.topic for s in rig.sent} - {ACCOUNT_COMMANDS, dlq(ASSESSMENT_COMPLETED)}
    assert not others
    try:
        assessment = parse_assessment(loads_object(raw))
    except (WireError, InvalidEvent):
        assert not commands
        assert [s.topic for s in rig.sent] == [dlq(ASSESSMENT_COMPLETED)]
        return
    if commands:
        assert assessment.status == "passed" and assessment.completed_at is not None
        cmd = parse_command(loads_object(commands[0].value))
        assert cmd.account_id == account_id_for(assessment.assessment_id)
        assert commands[0].key == cmd.account_id.encode()


@FAST
@given(hostile(TIER_WIRE))
def test_the_tier_validator_takes_anything(case: tuple[Any, bytes]) -> None:
    rig = new_rig()
    _, raw = case
    rig.run(validate_one(rig.ff, rig.message(TIERS, b"funded-100k", raw)))  # type: ignore[arg-type]
    try:
        parse_tier(loads_object(raw))
        valid = True
    except (WireError, InvalidTier):
        valid = False
    assert [s.topic for s in rig.sent] == ([] if valid else [dlq(TIERS)])


# --- payouts -------------------------------------------------------------------------------------


@dataclass
class RecordingGateway:
    transfers: list[dict[str, Any]] = field(default_factory=list)

    async def find_existing(self, withdrawal_id: str, account_id: str) -> str | None:
        return None

    async def transfer(self, **kw: Any) -> TransferMade:
        self.transfers.append(kw)
        return TransferMade(f"tr_{len(self.transfers)}")


PAYOUT_REQUEST = {
    "withdrawal_id": "wd-small",
    "account_id": ACCOUNT,
    "user_id": USER,
    "amount": "200.00",
    "destination": "acct_1Surface",
    "approved_event_id": "x",
}


@pytest.fixture(scope="module")
def payout_rig() -> Rig:
    """Its own account: the account agent's test may have settled wd-small in the shared one."""
    return seeded()[0]


@FAST
@given(hostile(PAYOUT_REQUEST))
def test_payouts_take_anything_and_pay_only_what_the_account_approved(
    payout_rig: Rig, case: tuple[Any, bytes]
) -> None:
    rig = payout_rig
    worker = PayoutWorker(rig.ff)
    gateway = RecordingGateway()
    _, raw = case
    rig.sent.clear()
    message = rig.message(PAYOUT_REQUESTS, ACCOUNT.encode(), raw).message
    rig.run(worker.handle(gateway, message))
    state, _ = load(rig.ff.extras[ACCOUNTS_TABLE].get(ACCOUNT))
    assert state is not None
    small = state.withdrawals["wd-small"]
    for t in gateway.transfers:  # only ever the approved one, as the account holds it
        assert t == {
            "withdrawal_id": "wd-small",
            "account_id": ACCOUNT,
            "user_id": USER,
            "amount_cents": small.amount_cents,
            "destination": small.destination,
        }
    try:
        req = loads_object(raw)
        names_it = (req.get("withdrawal_id"), req.get("account_id")) == ("wd-small", ACCOUNT)
    except WireError:
        names_it = False
    assert len(gateway.transfers) == (1 if names_it else 0)
    assert {s.topic for s in rig.sent} <= {ACCOUNT_COMMANDS}


# --- the sink ------------------------------------------------------------------------------------


@FAST
@given(
    st.lists(
        st.tuples(
            st.sampled_from([SNAPSHOT, *FACT_TOPICS]),
            st.one_of(
                st.binary(max_size=40),
                json_values.map(lambda v: encode(v, "raw")),
                st.sampled_from(TRADE_TEMPLATES + COMMAND_TEMPLATES)
                .flatmap(hostile)
                .map(lambda c: c[1]),
            ),
        ),
        max_size=6,
    )
)
def test_the_sink_reads_anything_into_rows_or_invalid(records: list[tuple[str, bytes]]) -> None:
    batch = collapse(
        SinkRecord(kind, value, timestamp=1.0, topic=kind, partition=0, offset=i)
        for i, (kind, value) in enumerate(records)
    )
    assert batch.records == len(records)
    assert batch.row_count + len(batch.invalid) >= 0


def test_a_value_too_large_to_send_again_is_dead_lettered_cut_with_its_size_and_hash() -> None:
    """The broker accepts records a little over the producer's 1,000,000-byte limit: such an
    input is dead-lettered cut (the send would otherwise fail, and the worker stop and read it
    again at every restart)."""
    import hashlib

    from agents.dead_letters import DLQ_KEEP_BYTES, DLQ_MAX_BYTES

    rig = new_rig()
    processor = AccountProcessor(rig.ff)
    raw = b'{"event_id": "t-big", "type": "position_opened", "pad": "' + b"x" * 1_040_000 + b'"}'
    headers: list[Any] = []

    async def send(**kw: Any) -> asyncio.Future[Any]:
        headers.extend(kw.get("headers") or [])
        return await RecordingTopic(dlq(TRADES), rig.sent).send(**kw)

    rig.ff.topics[dlq(TRADES)].send = send  # type: ignore[method-assign]
    rig.run(processor.process(rig.message(TRADES, ACCOUNT.encode(), raw)))  # type: ignore[arg-type]
    (letter,) = rig.sent
    assert letter.topic == dlq(TRADES) and len(letter.value) == DLQ_KEEP_BYTES < DLQ_MAX_BYTES
    assert letter.value == raw[:DLQ_KEEP_BYTES]
    found = dict(headers)
    assert found["value-truncated-from"] == str(len(raw)).encode()
    assert found["value-sha256"] == hashlib.sha256(raw).hexdigest().encode()
