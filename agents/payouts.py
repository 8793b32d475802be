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
from app.topics import ACCOUNT_COMMANDS, PAYOUT_REQUESTS
from domain.events import PayoutFailed, PayoutSucceeded
from tables.accounts import load

log = logging.getLogger(__name__)

BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)


def register(ff: FundedFlow) -> None:
    settings = ff.settings
    table = ff.extras["accounts"]
    commands = ff.topic(ACCOUNT_COMMANDS)
    # Results sent but maybe not applied yet: a repeat of the request re-sends the result
    # instead of asking Stripe again.
    sent_results: dict[str, TransferMade | TransferRefused] = {}
    ff.extras["payout_stats"] = stats = {"transfers": 0, "refused": 0, "transient_errors": 0}

    async def pay(
        gateway: PayoutGateway, req: dict[str, str]
    ) -> TransferMade | TransferRefused | None:
        from domain.money import parse_money

        for delay in (*BACKOFF_SECONDS, None):
            try:
                existing = await gateway.find_existing(req["withdrawal_id"])
                if existing is not None:
                    return TransferMade(existing)
                return await gateway.transfer(
                    withdrawal_id=req["withdrawal_id"],
                    account_id=req["account_id"],
                    user_id=req["user_id"],
                    amount_cents=parse_money(req["amount"]),
                    destination=req["destination"],
                )
            except TransientStripeError as exc:
                stats["transient_errors"] += 1
                log.warning("stripe transient error for %s: %s", req["withdrawal_id"], exc)
                if delay is None:
                    return None
                await asyncio.sleep(delay)
            except Exception:
                # Anything unexpected (an answer of an unforeseen shape...) must not crash the
                # agent: Faust would restart it past this request and leave the withdrawal
                # `approved` for good. Treated as transient: retried, then queued again.
                stats["transient_errors"] += 1
                log.exception("unexpected error paying %s", req["withdrawal_id"])
                if delay is None:
                    return None
                await asyncio.sleep(delay)
        return None

    async def pay_all(stream: faust.StreamT[bytes], gateway: PayoutGateway) -> None:
        async for event in stream.events():
            try:
                req = loads_object(event.message.value)
                wid = str(req["withdrawal_id"])
                account_id = str(req["account_id"])
            except (WireError, KeyError) as exc:
                log.error("unreadable payout request dropped: %s", exc)
                continue
            state, _ = load(table.get(account_id))
            w = state.withdrawals.get(wid) if state is not None else None
            if w is None or w.status != "approved":
                sent_results.pop(wid, None)
                log.info(
                    "payout request for %s: no transfer, the withdrawal is %s",
                    wid,
                    "unknown here" if w is None else w.status,
                )
                continue  # settled already (or never approved): no transfer
            result = sent_results.get(wid) or await pay(gateway, req)
            if result is None:
                # Stripe kept failing: queue the request behind the others and go on.
                await send_durable(
                    ff.topic(PAYOUT_REQUESTS), key=event.message.key, value=event.message.value
                )
                continue
            now = datetime.now(UTC)
            cmd: PayoutSucceeded | PayoutFailed
            if isinstance(result, TransferMade):
                stats["transfers"] += 1
                cmd = PayoutSucceeded(
                    event_id=f"payout-result:{wid}",
                    account_id=account_id,
                    withdrawal_id=wid,
                    stripe_transfer_id=result.transfer_id,
                    at=now,
                )
            else:
                stats["refused"] += 1
                cmd = PayoutFailed(
                    event_id=f"payout-result:{wid}",
                    account_id=account_id,
                    withdrawal_id=wid,
                    reason=result.reason,
                    at=now,
                )
            sent_results[wid] = result
            await send_durable(commands, key=account_id.encode(), value=dumps(cmd.to_wire()))

    @ff.app.agent(ff.topic(PAYOUT_REQUESTS), name="payouts")
    async def payouts(stream: faust.StreamT[bytes]) -> None:
        if settings.stripe_api_key is None:
            log.error("STRIPE_API_KEY is not set: this worker refuses to make payouts")
            while True:  # hold the partitions: nothing is consumed, so nothing is lost
                await asyncio.sleep(60)
                log.error("STRIPE_API_KEY is not set: payouts on this worker are waiting")
        gateway = PayoutGateway(settings.stripe_api_key, settings.stripe_api_base)
        try:
            await pay_all(stream, gateway)
        finally:
            await gateway.close()
