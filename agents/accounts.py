"""The account agent: the only writer of an account.

Trades and every command that changes an account arrive on one channel keyed by account_id.
Each is applied through the pure core (`domain.account.handle`); the new value is stored and
the facts are sent at once. Faust flushes the producer before it commits an offset, so a
crash re-reads what may not have been published, and the outbox in the stored value lets a
re-read event publish its facts again under the same ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import faust

from agents.dead_letters import send_dead_letter
from app.codec import WireError, dumps, loads_object
from app.faust_app import FundedFlow
from app.topics import ACCOUNT_COMMANDS, ACCOUNT_SNAPSHOTS, PAYOUT_REQUESTS, TRADES
from domain.account import AccountState, Outcome, handle
from domain.events import InvalidEvent, parse_command, parse_trade
from domain.money import format_cents
from domain.snapshots import snapshot, withdrawal_ids_in
from domain.withdrawals import APPROVED, Withdrawal
from tables.accounts import OUTBOX_LIMIT, dump, load, remembered_facts

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


class AccountProcessor:
    def __init__(self, ff: FundedFlow) -> None:
        self.ff = ff
        self.table = ff.extras["accounts"]
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
    ) -> None:
        key = account_id.encode()
        for fact in facts:
            await self.ff.topic(fact["type"]).send(key=key, value=dumps(fact), force=True)
            self.facts_published[fact["type"]] += 1
        if state is None:
            return
        for req in payout_requests(state, facts):
            await self.ff.topic(PAYOUT_REQUESTS).send(key=key, value=dumps(req), force=True)
        # Also for a duplicate: if the first pass died before its snapshot was sent, the
        # database would otherwise keep an old row until the account's next change. Rows only
        # take newer versions, so an extra snapshot is harmless.
        snap = snapshot(state, withdrawal_ids_in(facts))
        await self.ff.topic(ACCOUNT_SNAPSHOTS).send(key=key, value=dumps(snap), force=True)

    async def process(self, event: faust.types.EventT[bytes]) -> None:
        msg = event.message
        base = TRADES if msg.topic == self.ff.names.name(TRADES) else ACCOUNT_COMMANDS
        try:
            obj = loads_object(msg.value)
            item = parse_trade(obj) if base == TRADES else parse_command(obj)
        except (WireError, InvalidEvent) as exc:
            await send_dead_letter(self.ff, base, event, f"invalid_event: {exc}")
            return
        account_id = item.account_id
        key = msg.key.decode(errors="replace") if msg.key is not None else None
        if key != account_id:
            # Another key means another partition, and so another writer for this account.
            await send_dead_letter(
                self.ff, base, event, f"key_mismatch: key {key!r} is not account_id {account_id!r}"
            )
            return
        # From the store itself: Table.get asks `in` and then reads, two RocksDB lookups.
        state, outbox = load(self.table.data.get(account_id))
        source = f"{msg.topic}:{msg.partition}:{msg.offset}"
        outcome = handle(state, item, dedupe_window=self.ff.settings.dedupe_window)
        self.processed += 1
        if base == TRADES:
            self.rule_evaluations += 1
        if outcome.dead_letter:
            detail = f": {outcome.detail}" if outcome.detail else ""
            await send_dead_letter(self.ff, base, event, outcome.dead_letter + detail)
        elif outcome.duplicate:
            if state is not None:
                # The local store may be ahead of the changelog: a SIGKILL can take a table
                # write still in the producer's buffer while RocksDB kept it. Writing the value
                # again puts it in the changelog, where the other workers recover from.
                self.table[account_id] = dump(state, outbox)
            again = remembered_facts(outbox, item.event_id, source)
            await self.publish(account_id, again, state)
        elif outcome.changed and outcome.state is not None:
            if outcome.facts:
                outbox.append([item.event_id, source, outcome.facts])
            self.table[account_id] = dump(outcome.state, outbox[-OUTBOX_LIMIT:])
            await self.publish(account_id, outcome.facts, outcome.state)
        for waiter in self.waiters.pop(item.event_id, []):
            if not waiter.done():
                waiter.set_result(outcome)
        if outcome.changed and outcome.state is not None:
            self.settle_watchers(outcome.state, outcome.facts)
            self.payout_watch.note(outcome.state)
        elif state is not None:
            self.payout_watch.note(state)

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

    def settle_watchers(self, state: AccountState, facts: list[dict[str, Any]]) -> None:
        for fact in facts:
            if fact["type"] not in SETTLING_FACTS:
                continue
            w = state.withdrawals.get(fact["withdrawal_id"])
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

    @ff.app.timer(PAYOUT_RESEND_SECONDS / 4, name="payouts_again")  # type: ignore[untyped-decorator]
    async def payouts_again() -> None:
        await processor.ask_payouts_again()
