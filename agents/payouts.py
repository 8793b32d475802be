"""The payout agent: one Stripe transfer per approved withdrawal, at most.

What prevents a second transfer is the account state, read before every call: a withdrawal is
paid only while it is `approved`, and its result goes back to the account agent as a command
with an id derived from the withdrawal, so a repeated result changes nothing. The idempotency
key covers the window in which a result is on its way; the transfer-group look-up covers a
retry after Stripe has forgotten the key.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import faust

from app.codec import WireError, dumps, loads_object
from app.durable import send_durable
from app.faust_app import FundedFlow
from app.stripe_payouts import (
    PayoutGateway,
    TransferMade,
    TransferRefused,
    TransientStripeError,
)
from app.topics import ACCOUNT_COMMANDS, ACCOUNTS_TABLE, PAYOUT_REQUESTS
from domain.events import MAX_PAYOUT_REASON_LENGTH, PayoutFailed, PayoutSucceeded
from domain.state import AccountState
from domain.validation import quoted
from domain.withdrawals import APPROVED, Withdrawal
from tables.accounts import load

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)


class Gateway(Protocol):
    """What the payout agent needs of Stripe (app/stripe_payouts.py's PayoutGateway)."""

    async def find_existing(self, withdrawal_id: str, account_id: str) -> str | None: ...

    async def transfer(
        self,
        *,
        withdrawal_id: str,
        account_id: str,
        user_id: str,
        amount_cents: int,
        destination: str,
    ) -> TransferMade | TransferRefused: ...


class PayoutWorker:
    """One payout request at a time. The request only names the withdrawal: its amount, its
    destination and its user come from the account's state, so a stale, repeated or forged
    request can never pay another amount or another account than the one the account approved."""

    def __init__(self, ff: FundedFlow) -> None:
        self.ff = ff
        self.table = ff.extras[ACCOUNTS_TABLE]
        # Results sent but maybe not applied yet: a repeat of the request re-sends the result
        # instead of asking Stripe again.
        self.sent_results: dict[str, TransferMade | TransferRefused] = {}
        self.stats = ff.extras["payout_stats"] = {
            "transfers": 0,
            "refused": 0,
            "transient_errors": 0,
            "dropped": 0,
        }

    async def pay(
        self, gateway: Gateway, state: AccountState, w: Withdrawal
    ) -> TransferMade | TransferRefused | None:
        wid = w.withdrawal_id
        for delay in (*BACKOFF_SECONDS, None):
            try:
                existing = await gateway.find_existing(wid, state.account_id)
                if existing is not None:
                    return TransferMade(existing)
                return await gateway.transfer(
                    withdrawal_id=wid,
                    account_id=state.account_id,
                    user_id=state.user_id,
                    amount_cents=w.amount_cents,
                    destination=w.destination,
                )
            except TransientStripeError as exc:
                self.stats["transient_errors"] += 1
                log.warning("stripe transient error for %s: %s", wid, exc)
            except Exception:
                # Anything unexpected (an answer of an unforeseen shape...) must not crash the
                # agent: Faust would restart it past this request and leave the withdrawal
                # `approved` for good. Treated as transient: retried, then queued again.
                self.stats["transient_errors"] += 1
                log.exception("unexpected error paying %s", wid)
            if delay is None:
                return None
            await asyncio.sleep(delay)
        return None

    def approved(self, value: bytes | None) -> tuple[AccountState, Withdrawal] | None:
        """The account and the withdrawal the request names, if it is `approved` here."""
        try:
            req = loads_object(value)
        except WireError as exc:
            log.error("unreadable payout request dropped: %s", exc)
            return None
        wid, account_id = req.get("withdrawal_id"), req.get("account_id")
        if not isinstance(wid, str) or not isinstance(account_id, str):
            log.error("payout request without withdrawal_id and account_id dropped")
            return None
        state, _ = load(self.table.get(account_id))
        w = state.withdrawals.get(wid) if state is not None else None
        if state is None or w is None or w.status != APPROVED:
            self.sent_results.pop(wid, None)
            log.info(
                "payout request for %s: no transfer, the withdrawal is %s",
                wid,
                "unknown here" if w is None else w.status,
            )
            return None  # settled already (or never approved): no transfer
        return state, w

    async def handle(self, gateway: Gateway, message: Any) -> None:
        found = self.approved(message.value)
        if found is None:
            self.stats["dropped"] += 1
            return
        state, w = found
        wid = w.withdrawal_id
        result = self.sent_results.get(wid) or await self.pay(gateway, state, w)
        key = state.account_id.encode()
        if result is None:
            # Stripe kept failing: queue the request behind the others and go on.
            await send_durable(self.ff.topic(PAYOUT_REQUESTS), key=key, value=message.value)
            return
        now = datetime.now(UTC)
        cmd: PayoutSucceeded | PayoutFailed
        if isinstance(result, TransferMade):
            self.stats["transfers"] += 1
            cmd = PayoutSucceeded(
                event_id=f"payout-result:{wid}",
                account_id=state.account_id,
                withdrawal_id=wid,
                stripe_transfer_id=result.transfer_id,
                at=now,
            )
        else:
            self.stats["refused"] += 1
            cmd = PayoutFailed(
                event_id=f"payout-result:{wid}",
                account_id=state.account_id,
                withdrawal_id=wid,
                reason=quoted(
                    result.reason, max_length=MAX_PAYOUT_REASON_LENGTH, fallback="stripe_refused"
                ),
                at=now,
            )
        self.sent_results[wid] = result
        await send_durable(self.ff.topic(ACCOUNT_COMMANDS), key=key, value=dumps(cmd.to_wire()))


def register(ff: FundedFlow) -> None:
    settings = ff.settings
    worker = PayoutWorker(ff)

    @ff.app.agent(ff.topic(PAYOUT_REQUESTS), name="payouts")
    async def payouts(stream: faust.StreamT[bytes]) -> None:
        if settings.stripe_api_key is None:
            log.error("STRIPE_API_KEY is not set: this worker refuses to make payouts")
            while True:  # hold the partitions: nothing is consumed, so nothing is lost
                await asyncio.sleep(60)
                log.error("STRIPE_API_KEY is not set: payouts on this worker are waiting")
        gateway = PayoutGateway(settings.stripe_api_key, settings.stripe_api_base)
        try:
            async for event in stream.events():
                await worker.handle(gateway, event.message)
        finally:
            await gateway.close()
