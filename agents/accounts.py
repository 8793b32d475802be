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
import os
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import faust
import faust.streams as faust_streams

from agents.dead_letters import send_dead_letter
from app import durable
from app.codec import WireError, dumps, loads_object
from app.durable import send_durable
from app.faust_app import FundedFlow
from app.riskfeed import RiskPublisher
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
from domain.riskview import risk_view
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.state import RECENT_IDS
from domain.withdrawals import APPROVED, Withdrawal, archive_entry, read_archive_entry
from tables.accounts import (
    OUTBOX_LIMIT,
    Offsets,
    Outbox,
    account_key,
    dump,
    legacy_ids,
    load,
    load_offsets,
    remembered_facts,
)

log = logging.getLogger(__name__)

# The worker's exit status when a batch fails for a reason that is not its inputs' (see
# `register`): a supervisor restarts it and nothing was committed.
EXIT_BATCH_FAILED = 70

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
        if w is None or w.status != APPROVED:
            continue  # settled later in the same batch: nothing to pay
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


@dataclass
class Pending:
    """One account's part of a batch: its value as the batch's inputs leave it, and what its
    flush sends and answers."""

    account_id: str
    # The account's latest input: table writes go to its partition (the account's).
    event: faust.types.EventT[bytes]
    state: AccountState | None
    outbox: Outbox
    offsets: Offsets
    dirty: bool = False
    facts: list[dict[str, Any]] = field(default_factory=list)
    archived: list[Withdrawal] = field(default_factory=list)
    answers: list[tuple[str, Outcome]] = field(default_factory=list)
    # Inputs applied since the value was last written.
    applied: int = 0

    def flushed(self) -> None:
        self.dirty = False
        self.applied = 0
        self.facts = []
        self.archived = []
        self.answers = []


@contextmanager
def acting_for(event: faust.types.EventT[bytes]) -> Iterator[None]:
    """Table reads and writes in the name of `event`: Faust's RocksDB store reads and writes
    the database of the current event's partition, and a table sends its changelog record to
    that partition. In a batch the stream's current event is the batch's last input, which
    may be of another partition (faust-streaming issues #300, #497). Every input of an
    account is on its partition."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


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
        self.batches = 0
        # Waits until every record sent so far is delivered (app/durable.py).
        self.delivered: Callable[[], Awaitable[None]] = durable.delivered
        # The live risk feed: each stored change's risk view, for Redis (app/riskfeed.py).
        self.risk: RiskPublisher | None = ff.extras.get("risk_publisher")

    def resolve(self, event_id: str | None, outcome: Outcome) -> None:
        # Any claimed id, the empty one included: a waiter keyed by "" is answered too.
        for waiter in self.waiters.pop(event_id, []) if event_id is not None else []:
            if not waiter.done():
                waiter.set_result(outcome)

    async def refuse(
        self, base: str, event: faust.types.EventT[bytes], event_id: str | None, reason: str
    ) -> None:
        await send_dead_letter(self.ff, base, event, reason)
        self.resolve(event_id, invalid_request(reason))

    async def process(self, event: faust.types.EventT[bytes]) -> None:
        """One input on its own: a batch of one."""
        await self.process_batch([event])

    async def process_batch(self, events: Sequence[faust.types.EventT[bytes]]) -> None:
        """Apply a batch of inputs in order, grouped by account: each account's value is read
        once and written (and snapshotted) once per batch, or once per RECENT_IDS applied
        inputs; facts are sent as produced, each input's id is remembered as it is applied.

        A value is written only once every record sent before it is delivered (`delivered`):
        the applied ids and facts of the inputs it contains are then in Kafka, whatever
        happens to the value's own record. Without that wait a SIGKILL could leave the worker's
        local store holding a value whose inputs' ids died in the producer's buffer: read
        again after the restart, those inputs are Kafka's redelivery (their offsets are in the
        value) and their ids would never be remembered, so a producer's later redelivery of
        one of them would be applied a second time (the long-history crash test lost 123 ids
        per account that way). Waiting requests are answered once their account's value is
        stored, so a read that follows its answer sees the change."""
        self.batches += 1
        pending: dict[str, Pending] = {}
        for event in events:
            # Faust's stores read and write the partition of the current event.
            with acting_for(event):
                await self.process_one(event, pending)
        if any(account.dirty for account in pending.values()):
            await self.delivered()
        for account in pending.values():
            with acting_for(account.event):
                await self.flush(account)

    async def process_one(
        self, event: faust.types.EventT[bytes], pending: dict[str, Pending]
    ) -> None:
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
        account = pending.get(account_id)
        if account is None:
            account = pending[account_id] = self.open(account_id, event)
        account.event = event
        partition = f"{msg.topic}:{msg.partition}"
        source = f"{partition}:{msg.offset}"
        state = account.state
        outcome = self.apply(state, item, msg.offset <= account.offsets.get(partition, -1))
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
                account.dirty = True
            again = remembered_facts(account.outbox, item.event_id, source)
            # Sent again under the same ids; an approval among them asks for its payout again
            # (the payout agent acts once per withdrawal, whatever the repeats).
            account.facts.extend(again)
            await self.send_facts(account_id, again)
        elif outcome.changed and outcome.state is not None:
            # The id and the archive now (a repeat later in the batch must find them), the
            # value that relies on them at the end of the batch.
            if outcome.remember is not None:
                self.applied[account_key(account_id, item.event_id)] = outcome.remember.to_wire()
            for w in outcome.archive:
                self.archive[account_key(account_id, w.withdrawal_id)] = archive_entry(
                    account_id, w
                )
            if outcome.facts:
                account.outbox.append([item.event_id, source, outcome.facts])
                del account.outbox[:-OUTBOX_LIMIT]
            account.offsets[partition] = msg.offset
            account.state = outcome.state
            account.dirty = True
            account.facts.extend(outcome.facts)
            account.archived.extend(outcome.archive)
            await self.send_facts(account_id, outcome.facts)
        account.answers.append((item.event_id, outcome))
        if outcome.changed:
            account.applied += 1
            if account.applied >= RECENT_IDS:
                # The value names its last RECENT_IDS inputs: writing it at least that often
                # leaves every applied input's id, in order, in the changelog.
                await self.delivered()
                await self.flush(account)

    def open(self, account_id: str, event: faust.types.EventT[bytes]) -> Pending:
        """The account's value, read once for the batch (from the store itself: Table.get asks
        `in` and then reads, two RocksDB lookups)."""
        raw = self.table.data.get(account_id)
        state, outbox = load(raw)
        for legacy_id, refusal in legacy_ids(raw):
            # A value of the old format kept its applied ids inside: they move out once.
            self.applied[account_key(account_id, legacy_id)] = Remembered(refusal).to_wire()
        return Pending(account_id, event, state, outbox, load_offsets(raw))

    async def send_facts(self, account_id: str, facts: list[dict[str, Any]]) -> None:
        key = account_id.encode()
        for fact in facts:
            await send_durable(self.ff.topic(fact["type"]), key=key, value=dumps(fact))
            self.facts_published[fact["type"]] += 1

    async def flush(self, account: Pending) -> None:
        """The end of an account's batch: its value, its payout requests and its snapshot, then
        the answers to the requests waiting on its inputs."""
        state = account.state
        if state is not None and account.dirty:
            stored = dump(state, account.outbox, account.offsets)
            self.table[account.account_id] = stored
            key = account.account_id.encode()
            for req in payout_requests(state, account.facts):
                await send_durable(self.ff.topic(PAYOUT_REQUESTS), key=key, value=dumps(req))
            # Also for a duplicate: if the first pass died before its snapshot was sent, the
            # database would otherwise keep an old row until the account's next change. Rows
            # only take newer versions, so an extra snapshot is harmless.
            snap = snapshot(state, withdrawal_ids_in(account.facts), account.archived)
            await send_durable(self.ff.topic(ACCOUNT_SNAPSHOTS), key=key, value=dumps(snap))
            if self.risk is not None:
                # The view is built by the publisher, and only if someone streams the account.
                self.risk.offer(account.account_id, state.version, stored["state"])
        for event_id, outcome in account.answers:
            self.resolve(event_id, outcome)
        if state is not None:
            if account.facts or account.archived:
                self.settle_watchers(state, account.facts, account.archived)
            self.payout_watch.note(state)
        account.flushed()

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


def ready_event(stream: faust.StreamT[bytes]) -> bool:
    """Whether the stream's next input is already queued and will be handed out at once: an
    event of the current consumer generation, with the flow running (the stream skips any
    other, and would then wait for a new input)."""
    queued = getattr(getattr(stream.channel, "queue", None), "_queue", None)
    if not queued:
        return False
    message = getattr(queued[0], "message", None)
    app = stream.app
    return (
        message is not None
        and message.generation_id == app.consumer_generation_id
        and app.flow_control.is_active()
    )


class BatchProcessor(Protocol):
    async def process_batch(self, events: Sequence[faust.types.EventT[bytes]]) -> None: ...


async def run_batches(
    stream: faust.StreamT[bytes], processor: BatchProcessor, batch_max: int
) -> None:
    """The account agent's loop: each input that arrives, with the inputs already queued
    behind it (up to `batch_max`), is one batch; its inputs are acknowledged only once the
    batch is processed. A quiet stream makes batches of one, so batching adds no wait; a
    backlog makes full ones.

    Not `Stream.take_events`: it waits up to `within` for a batch to fill, a delay on every
    rule's answer under light load, and its buffer is shared with the task that fills it.
    Reading faust-streaming 0.15.3, after a timed-out wait that task may append inputs while
    a batch is being processed, and the batch's end acknowledges everything in the buffer (a
    race read in the code, not observed: the inputs the long-history crash test seemed to
    lose under take_events turned out to be the delivery hole `process_batch` closes). Here
    the inputs are taken from the stream in the agent's own task, without acks (`noack`), and
    acknowledged by hand once their batch is done.
    """
    # StreamT does not declare noack; the stream an agent gets is a Stream.
    inputs = cast("faust_streams.Stream[bytes]", stream).noack()
    events = cast(AsyncIterator[faust.types.EventT[bytes]], inputs.events())
    async for first in events:
        batch = [first]
        while len(batch) < batch_max and ready_event(inputs):
            batch.append(await anext(events))
        try:
            await processor.process_batch(batch)
        except Exception:
            # Nothing of the batch is acknowledged, so no offset past it is committed. What
            # reaches here is not an input's fault (those are dead-lettered one by one): stop
            # the process, and the inputs are read again after the restart.
            log.critical("account batch failed: the worker stops", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_BATCH_FAILED)
        for event in batch:
            await inputs.ack(event)


def stored_view(stored_state: dict[str, Any], at: float) -> bytes:
    """The risk view's JSON of an account's stored state as of `at` (epoch seconds, when it was
    stored): the live feed's publisher calls this for the accounts someone streams."""
    as_of = datetime.fromtimestamp(at, UTC)
    return dumps(risk_view(AccountState.from_dict(stored_state), as_of))


def register(ff: FundedFlow) -> None:
    if ff.settings.risk_feed:
        publisher = ff.extras["risk_publisher"] = RiskPublisher(
            ff.settings.redis_url, stored_view, ff.settings.topic_prefix
        )

        @ff.app.task  # type: ignore[untyped-decorator]
        async def publish_risk_views() -> None:
            await publisher.run()

    processor = AccountProcessor(ff)
    ff.extras["account_processor"] = processor

    batch_max = ff.settings.batch_max
    # Table writes go through Faust's producer buffer, which the stream stops to drain (with a
    # warning) past `max_messages` records: a batch writes one applied id per input and one
    # value per 64 inputs of an account, so the buffer is let hold a few batches.
    ff.app.producer.buffer.max_messages = max(ff.app.producer.buffer.max_messages, 4 * batch_max)

    @ff.app.agent(ff.topic("account-inputs"), name="accounts")
    async def accounts(stream: faust.StreamT[bytes]) -> None:
        await run_batches(stream, processor, batch_max)

    @processor.table.on_recover  # type: ignore[untyped-decorator]
    async def sweep_after_recovery() -> None:
        processor.sweep_approved()

    @ff.app.timer(PAYOUT_RESEND_SECONDS / 4, name="payouts_again")  # type: ignore[untyped-decorator]
    async def payouts_again() -> None:
        await processor.ask_payouts_again()
