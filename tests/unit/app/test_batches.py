"""The account agent's batches (`AccountProcessor.process_batch`) against one input at a time.

Any sequence of inputs, cut into batches anywhere, must leave the same tables, send the same
facts and dead letters in the same order, answer every waiting request the same, and end with
the same last snapshot per account; a batch writes an account's value once per RECENT_IDS
applied inputs at most, and sends one snapshot per value write.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.accounts import AccountProcessor
from app.topics import ACCOUNT_COMMANDS, ACCOUNTS_TABLE, TRADES
from domain.account import Outcome
from domain.state import RECENT_IDS
from tests.unit.app.test_input_surface import (
    ACTIVATION,
    AT,
    COMMAND_TEMPLATES,
    TRADE_TEMPLATES,
    MemoryTable,
    Rig,
    new_rig,
)

SNAPSHOTS = "fundedflow.account-snapshots"
PAYOUTS = "fundedflow.payout-requests"
ACCOUNTS = ("acct-a", "acct-b")

Input = tuple[str, str, bytes]  # (base topic, key, value)


def activation(account: str) -> Input:
    return (ACCOUNT_COMMANDS, account, json.dumps({**ACTIVATION, "account_id": account}).encode())


def make_input(op: tuple[int, int, int, int], history: list[Input]) -> Input:
    """One input from four small numbers: its kind, account, position or withdrawal, amount."""
    kind, a, n, amount = op
    account = ACCOUNTS[a % len(ACCOUNTS)]
    if kind == 0 and history:
        return history[n % len(history)]  # a producer's redelivery of an earlier input
    if kind == 1:
        return (TRADES, account, b'{"event_id": "bad", ')  # unreadable: a dead letter
    if kind <= 4:
        template = TRADE_TEMPLATES[kind - 2]
        obj = {
            **template,
            "event_id": f"t-{len(history)}",
            "account_id": account,
            "position_id": f"p-{n % 3}",
        }
        if "realized_pnl" in obj:
            obj["realized_pnl"] = f"{amount * 37}.00"
        if "unrealized_pnl" in obj:
            obj["unrealized_pnl"] = f"-{amount * 11}.00"
        return (TRADES, account, json.dumps(obj).encode())
    template = COMMAND_TEMPLATES[(kind - 5) % 3]  # request, approve, reject
    wid = f"wd-{n % 4}"
    obj = {
        **template,
        "account_id": account,
        "withdrawal_id": wid,
        # Command ids name their account, as the HTTP layer's do (waiters are keyed by id).
        "event_id": f"{template['type']}:{account}:{wid}",
    }
    if "amount" in obj:
        obj["amount"] = f"{100 + amount}.00"
    return (ACCOUNT_COMMANDS, account, json.dumps(obj).encode())


class CountingTable(MemoryTable):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


class CountingRig:
    """A rig whose account table counts its writes, and waiters for every input's event id."""

    def __init__(self) -> None:
        self.rig: Rig = new_rig()
        self.table = self.rig.ff.extras[ACCOUNTS_TABLE] = CountingTable()
        self.processor = AccountProcessor(self.rig.ff)
        self.answers: dict[str, list[asyncio.Future[Outcome]]] = {}

    @property
    def writes(self) -> int:
        return self.table.writes

    def events(self, inputs: list[Input]) -> list[Any]:
        out = []
        for base, key, value in inputs:
            out.append(self.rig.message(base, key.encode(), value))
            try:
                eid = json.loads(value)["event_id"]
            except (ValueError, KeyError, TypeError):
                continue
            fut = self.rig.loop.create_future()
            self.processor.waiters.setdefault(eid, []).append(fut)
            self.answers.setdefault(eid, []).append(fut)
        return out

    def replies(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for eid, futs in self.answers.items():
            out[eid] = [
                None
                if not f.done()
                else (f.result().reply.to_wire() if f.result().reply else f.result().duplicate)
                for f in futs
            ]
        return out


def by_topic(rig: Rig, topic: str) -> list[tuple[bytes | None, bytes]]:
    return [(s.key, s.value) for s in rig.sent if s.topic == topic]


def wids(rig: Rig) -> set[str]:
    return {json.loads(v)["withdrawal_id"] for _, v in by_topic(rig, PAYOUTS)}


def sink_rows(rig: Rig) -> dict[str, Any]:
    """The rows the sink keeps from the snapshots in order: per account its latest account
    and balances rows, and every withdrawal's latest row."""
    rows: dict[str, Any] = {}
    for _, value in by_topic(rig, SNAPSHOTS):
        snap = json.loads(value)
        rows[snap["account_id"]] = (snap["version"], snap["account"], snap["balances"])
        for w in snap["withdrawals"]:
            rows[w["id"]] = w
    return rows


ops = st.tuples(st.integers(0, 7), st.integers(0, 1), st.integers(0, 50), st.integers(1, 40))


@settings(max_examples=60, deadline=None)
@given(st.lists(ops, min_size=1, max_size=60), st.lists(st.integers(1, 25), min_size=1))
def test_any_cut_into_batches_equals_one_input_at_a_time(
    drawn: list[tuple[int, int, int, int]], cuts: list[int]
) -> None:
    inputs: list[Input] = [activation(a) for a in ACCOUNTS]
    history: list[Input] = []
    for op in drawn:
        inp = make_input(op, history)
        history.append(inp)
        inputs.append(inp)

    one = CountingRig()
    for event in one.events(inputs):
        one.rig.run(one.processor.process(event))

    batched = CountingRig()
    events = batched.events(inputs)
    batches, at, i = [], 0, 0
    while at < len(events):
        size = cuts[i % len(cuts)]
        batches.append(events[at : at + size])
        at += size
        i += 1
    for batch in batches:
        batched.rig.run(batched.processor.process_batch(batch))

    assert batched.rig.tables() == one.rig.tables()
    skip = {SNAPSHOTS, PAYOUTS}
    assert [(s.topic, s.key, s.value) for s in batched.rig.sent if s.topic not in skip] == [
        (s.topic, s.key, s.value) for s in one.rig.sent if s.topic not in skip
    ]
    assert batched.replies() == one.replies()
    assert all(f.done() for futs in batched.answers.values() for f in futs)
    # What the sink makes of the snapshots: the same rows either way.
    assert sink_rows(batched.rig) == sink_rows(one.rig)
    # A batch writes each account at most once per RECENT_IDS inputs, and snapshots each write.
    assert batched.writes <= one.writes
    assert len(by_topic(batched.rig, SNAPSHOTS)) == batched.writes
    # Every approval asked for its payout either way (nothing settles them here).
    assert wids(batched.rig) == wids(one.rig)


def test_a_hot_account_is_written_once_per_recent_ids_inputs() -> None:
    """300 trades of one account in one batch: its value is written every RECENT_IDS applied
    inputs and at the end, so the changelog names every applied input's id in order."""
    rig = CountingRig()
    inputs: list[Input] = [activation("acct-a")]
    opened = {**TRADE_TEMPLATES[0], "account_id": "acct-a", "position_id": "p-1", "event_id": "o"}
    inputs.append((TRADES, "acct-a", json.dumps(opened).encode()))
    for k in range(298):
        upd = {
            **TRADE_TEMPLATES[1],
            "account_id": "acct-a",
            "position_id": "p-1",
            "event_id": f"u-{k}",
            "unrealized_pnl": f"-{k}.00",
            "occurred_at": AT,
        }
        inputs.append((TRADES, "acct-a", json.dumps(upd).encode()))
    rig.rig.run(rig.processor.process_batch(rig.events(inputs)))
    assert rig.writes == -(-len(inputs) // RECENT_IDS)  # 300 inputs: 5 writes
    snaps = by_topic(rig.rig, SNAPSHOTS)
    assert len(snaps) == rig.writes
    versions = [json.loads(v)["version"] for _, v in snaps]
    assert versions == [64, 128, 192, 256, 300]
    value = rig.rig.ff.extras[ACCOUNTS_TABLE].get("acct-a")
    assert value["state"]["version"] == 300
