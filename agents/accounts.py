"""The account agent: the only writer of an account.

Trades and every command that changes an account arrive on one channel keyed by account_id.
Each is applied through the pure core (`domain.account.step`, with the applied-ids memory and
the withdrawal archive of tables/accounts.py); the new value, the input's id and any settled
withdrawal are stored and the facts are sent at once. Faust flushes the producer before it
commits an offset, so a crash re-reads what may not have been published; the input offsets in
the value recognise such a re-read exactly, and the outbox lets it publish its facts again
under the same ids.

A command that cannot be applied at all (it does not parse, or names another key) resolves the
HTTP request waiting on it with the reason at once (`invalid_request`), never a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import faust

from agents.dead_letters import send_dead_letter
from app.codec import WireError, dumps, loads_object
from app.durable import send_durable
from app.faust_app import FundedFlow
from app.topics import (
    ACCOUNT_COMMANDS,
    ACCOUNT_SNAPSHOTS,
    ACCOUNTS_TABLE,
    APPLIED_IDS_TABLE,
    PAYOUT_REQUESTS,
    TRADES,
    WITHDRAWAL_ARCHIVE_TABLE,
)
from domain.account import AccountState, Outcome, Remembered, Reply, handle, step
from domain.events import Command, InvalidEvent, TradeEvent, parse_command, parse_trade
from domain.money import format_cents
from domain.policy import Refusal
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.withdrawals import APPROVED, Withdrawal, archive_entry, read_archive_entry
from tables.accounts import (
    OUTBOX_LIMIT,
    account_key,
    dump,
    legacy_ids,
    load,
    load_offsets,
    remembered_facts,
)

log = logging.getLogger(__name__)

SETTLING_FACTS = frozenset({"withdrawal.completed", "withdrawal.failed", "withdrawal.rejected"})


def payout_request(state: AccountState, w: Withdrawal) -> dict[str, Any]:
    return {
        "withdrawal_id": w.withdrawal_id,
        "account_id": state.account_id,
        "user_id": state.user_id,
        "amount": format_cents(w.amount_cents),
        "destination": w.destination,
    }


def payout_requests(state: AccountState, facts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An approved withdrawal asks the payout agent for its transfer."""
    out = []
    for fact in facts:
        if fact["type"] != "withdrawal.approved":
            continue
        w = state.withdrawals.get(fact["withdrawal_id"])
        if w is None:
            continue
        out.append({**payout_request(state, w), "approved_event_id": fact["event_id"]})
    return out


PAYOUT_RESEND_SECONDS = 20.0


class PayoutWatch:
    """The approved withdrawals of this worker's accounts, and when each was last asked for.

    A payout request can be lost between the account agent and the payout agent: in the chaos
    test a worker SIGKILLed around a rebalance left two withdrawals `approved` whose requests
    were never acted on (the payout group's offsets had moved past them), and nothing else
    would have asked again. So every withdrawal still `approved` after PAYOUT_RESEND_SECONDS is
    asked for again (`agents.payouts` checks the state, looks the transfer up at Stripe by its
    group and sends the idempotency key: a repeat never makes a second transfer). Kept in
    memory: after a restart an account is noted again at its next event.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.asked: dict[str, tuple[str, float]] = {}  # withdrawal id -> (account id, when)

    def note(self, state: AccountState) -> None:
        now = self.clock()
        for w in state.withdrawals.values():
            if w.status == APPROVED:
                self.asked.setdefault(w.withdrawal_id, (state.account_id, now))
            else:
                self.asked.pop(w.withdrawal_id, None)

    def due(self) -> list[tuple[str, str]]:
        """(withdrawal id, account id) of the requests to send again now."""
        limit = self.clock() - PAYOUT_RESEND_SECONDS
        return [(wid, acct) for wid, (acct, when) in self.asked.items() if when <= limit]

    def asked_again(self, withdrawal_id: str, account_id: str) -> None:
        self.asked[withdrawal_id] = (account_id, self.clock())

    def forget(self, withdrawal_id: str) -> None:
        self.asked.pop(withdrawal_id, None)


class TableMemory:
    """`domain.account.Memory` over the applied-ids table and the withdrawal archive."""

    def __init__(self, applied: Any, archive: Any) -> None:
        self.applied = applied
        self.archive = archive

    def seen(self, account_id: str, event_id: str) -> Remembered | None:
        value = self.applied.data.get(account_key(account_id, event_id))
        return None if value is None else Remembered.from_wire(value)

    def archived(self, account_id: str, withdrawal_id: str) -> Withdrawal | None:
        value = self.archive.data.get(account_key(account_id, withdrawal_id))
        return None if value is None else read_archive_entry(value)[1]


def claimed_event_id(obj: dict[str, Any] | None, raw: bytes | None) -> str | None:
    """The `event_id` an unreadable command claims, so that a request waiting on it is
    answered with the reason at once. Read leniently: the codec refused the bytes (nested too
    deep, a repeated key, a NUL somewhere), yet a waiter may still be keyed by the id in them."""
    if obj is None and raw:
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    claimed = obj.get("event_id") if isinstance(obj, dict) else None
    return claimed if isinstance(claimed, str) else None


def invalid_request(reason: str) -> Outcome:
    """What a waiter on a command the agent could not apply gets: the reason, at once."""
    return Outcome(None, reply=Reply.refuse(Refusal("invalid_request", reason[:500])))


class AccountProcessor:
    def __init__(self, ff: FundedFlow) -> None:
        self.ff = ff
        self.table = ff.extras[ACCOUNTS_TABLE]
        self.applied = ff.extras[APPLIED_IDS_TABLE]
        self.archive = ff.extras[WITHDRAWAL_ARCHIVE_TABLE]
        self.memory = TableMemory(self.applied, self.archive)
        # Futures of HTTP requests served by this worker: by command event_id, and by
        # withdrawal id for answers that wait until a withdrawal is settled.
        self.waiters: dict[str, list[asyncio.Future[Outcome]]] = ff.extras.setdefault("waiters", {})
        self.watchers: dict[str, list[asyncio.Future[dict[str, Any]]]] = ff.extras.setdefault(
            "withdrawal_watchers", {}
        )
        self.payout_watch = PayoutWatch()
        self.facts_published: Counter[str] = Counter()
        self.processed = 0
        self.rule_evaluations = 0

    async def publish(
        self,
        account_id: str,
        facts: list[dict[str, Any]],
        state: AccountState | None,
        archived: list[Withdrawal] | None = None,
    ) -> None:
        key = account_id.encode()
        for fact in facts:
            await send_durable(self.ff.topic(fact["type"]), key=key, value=dumps(fact))
            self.facts_published[fact["type"]] += 1
        if state is None:
            return
        for req in payout_requests(state, facts):
            await send_durable(self.ff.topic(PAYOUT_REQUESTS), key=key, value=dumps(req))
        # Also for a duplicate: if the first pass died before its snapshot was sent, the
        # database would otherwise keep an old row until the account's next change. Rows only
        # take newer versions, so an extra snapshot is harmless.
        snap = snapshot(state, withdrawal_ids_in(facts), archived or [])
        await send_durable(self.ff.topic(ACCOUNT_SNAPSHOTS), key=key, value=dumps(snap))

    def resolve(self, event_id: str | None, outcome: Outcome) -> None:
        for waiter in self.waiters.pop(event_id, []) if event_id else []:
            if not waiter.done():
                waiter.set_result(outcome)

    async def refuse(
        self, base: str, event: faust.types.EventT[bytes], event_id: str | None, reason: str
    ) -> None:
        await send_dead_letter(self.ff, base, event, reason)
        self.resolve(event_id, invalid_request(reason))

    async def process(self, event: faust.types.EventT[bytes]) -> None:
        msg = event.message
        base = TRADES if msg.topic == self.ff.names.name(TRADES) else ACCOUNT_COMMANDS
        obj: dict[str, Any] | None = None
        try:
            obj = loads_object(msg.value)
            item = parse_trade(obj) if base == TRADES else parse_command(obj)
        except (WireError, InvalidEvent) as exc:
            await self.refuse(
                base, event, claimed_event_id(obj, msg.value), f"invalid_event: {exc}"
            )
            return
        account_id = item.account_id
        key = msg.key.decode(errors="replace") if msg.key is not None else None
        if key != account_id:
            # Another key means another partition, and so another writer for this account.
            await self.refuse(
                base,
                event,
                item.event_id,
                f"key_mismatch: key {key!r} is not account_id {account_id!r}",
            )
            return
        # From the store itself: Table.get asks `in` and then reads, two RocksDB lookups.
        raw = self.table.data.get(account_id)
        state, outbox = load(raw)
        offsets = load_offsets(raw)
        for legacy_id, refusal in legacy_ids(raw):
            # A value of the old format kept its applied ids inside: they move out once.
            self.applied[account_key(account_id, legacy_id)] = Remembered(refusal).to_wire()
        partition = f"{msg.topic}:{msg.partition}"
        source = f"{partition}:{msg.offset}"
        outcome = self.apply(state, item, msg.offset <= offsets.get(partition, -1))
        self.processed += 1
        if base == TRADES:
            self.rule_evaluations += 1
        if outcome.dead_letter:
            detail = f": {outcome.detail}" if outcome.detail else ""
            await send_dead_letter(self.ff, base, event, outcome.dead_letter + detail)
            if outcome.reply is None:
                outcome = invalid_request(outcome.dead_letter + detail)
        elif outcome.duplicate:
            if state is not None:
                # The local store may be ahead of the changelog: a SIGKILL can take a table
                # write still in the producer's buffer while RocksDB kept it. Writing the value
                # again puts it in the changelog, where the other workers recover from.
                self.table[account_id] = dump(state, outbox, offsets)
            again = remembered_facts(outbox, item.event_id, source)
            await self.publish(account_id, again, state)
        elif outcome.changed and outcome.state is not None:
            # The id and the archive first, then the value that relies on them.
            if outcome.remember is not None:
                self.applied[account_key(account_id, item.event_id)] = outcome.remember.to_wire()
            for w in outcome.archive:
                self.archive[account_key(account_id, w.withdrawal_id)] = archive_entry(
                    account_id, w
                )
            if outcome.facts:
                outbox.append([item.event_id, source, outcome.facts])
            offsets[partition] = msg.offset
            self.table[account_id] = dump(outcome.state, outbox[-OUTBOX_LIMIT:], offsets)
            await self.publish(account_id, outcome.facts, outcome.state, outcome.archive)
        self.resolve(item.event_id, outcome)
        if outcome.changed and outcome.state is not None:
            self.settle_watchers(outcome.state, outcome.facts, outcome.archive)
            self.payout_watch.note(outcome.state)
        elif state is not None:
            self.payout_watch.note(state)

    def apply(
        self, state: AccountState | None, item: Command | TradeEvent, redelivered: bool
    ) -> Outcome:
        """The core's outcome; an offset the value already applied is Kafka's redelivery of
        that very message: a duplicate whatever the id memory says (its entry may be lost)."""
        if state is None or not redelivered:
            return step(state, item, self.memory)
        seen = self.memory.seen(state.account_id, item.event_id) or Remembered()
        wid = getattr(item, "withdrawal_id", None)
        archived = self.memory.archived(state.account_id, wid) if isinstance(wid, str) else None
        return handle(state, item, seen=seen, archived=archived)

    def sweep_approved(self) -> int:
        """Note every withdrawal still `approved` in this worker's active accounts; the number
        noted. Run when a rebalance's table recovery completes: a payout request lost around a
        crash would otherwise wait for its account's next event, forever for an idle account.

        Reads the store's raw values (its active partitions only) and decodes just those that
        can hold an approved withdrawal: a scan of 100,000 accounts is a byte search each. It
        does not yield to the loop while iterating: a revoked partition's database may be
        closed under an open iterator."""
        store = self.table.data
        raw_items = getattr(store, "_iteritems", None)
        if raw_items is None:
            return 0
        candidates = [value for _, value in raw_items() if value and b'"approved"' in value]
        noted = 0
        for value in candidates:
            state, _ = load(store._decode_value(value))
            if state is None:
                continue
            before = len(self.payout_watch.asked)
            self.payout_watch.note(state)
            noted += len(self.payout_watch.asked) - before
        if noted:
            log.info("%d approved withdrawal(s) not yet settled: watched for their payouts", noted)
        return noted

    async def ask_payouts_again(self) -> None:
        for wid, account_id in self.payout_watch.due():
            state, _ = load(self.table.data.get(account_id))
            w = state.withdrawals.get(wid) if state is not None else None
            if state is None or w is None or w.status != APPROVED:
                self.payout_watch.forget(wid)
                continue
            log.warning("withdrawal %s still approved: asking for its payout again", wid)
            await self.ff.topic(PAYOUT_REQUESTS).send(
                key=account_id.encode(), value=dumps(payout_request(state, w)), force=True
            )
            self.payout_watch.asked_again(wid, account_id)

    def settle_watchers(
        self, state: AccountState, facts: list[dict[str, Any]], archived: list[Withdrawal]
    ) -> None:
        out = {w.withdrawal_id: w for w in archived}
        for fact in facts:
            if fact["type"] not in SETTLING_FACTS:
                continue
            w = state.withdrawals.get(fact["withdrawal_id"]) or out.get(fact["withdrawal_id"])
            if w is None:
                continue
            for fut in self.watchers.pop(w.withdrawal_id, []):
                if not fut.done():
                    fut.set_result(w.to_wire(state.account_id))


def register(ff: FundedFlow) -> None:
    processor = AccountProcessor(ff)
    ff.extras["account_processor"] = processor

    @ff.app.agent(ff.topic("account-inputs"), name="accounts")
    async def accounts(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await processor.process(event)

    @processor.table.on_recover  # type: ignore[untyped-decorator]
    async def sweep_after_recovery() -> None:
        processor.sweep_approved()

    @ff.app.timer(PAYOUT_RESEND_SECONDS / 4, name="payouts_again")  # type: ignore[untyped-decorator]
    async def payouts_again() -> None:
        await processor.ask_payouts_again()
