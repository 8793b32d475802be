"""Stripe Connect transfers for approved withdrawals (CONTRACT.md section 5).

Only the transport lives here; whether a transfer may be made at all is decided by the account
state the payout agent reads first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe
from stripe._http_client import AIOHTTPClient


@dataclass(frozen=True)
class TransferMade:
    transfer_id: str


@dataclass(frozen=True)
class TransferRefused:
    reason: str


class TransientStripeError(RuntimeError):
    """Network trouble, a 5xx or a rate limit: the same request may be sent again."""


def idempotency_key(withdrawal_id: str) -> str:
    return f"withdrawal-{withdrawal_id}"


class PayoutGateway:
    def __init__(self, api_key: str, api_base: str | None = None, timeout: float = 20.0) -> None:
        base = {"api": api_base.rstrip("/")} if api_base else None
        self._http = AIOHTTPClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=base,  # type: ignore[arg-type]
            http_client=self._http,
            max_network_retries=0,  # retries are ours, with the same idempotency key
        )

    async def close(self) -> None:
        """Close the HTTP session (else aiohttp reports it unclosed at every stop)."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def find_existing(self, withdrawal_id: str, account_id: str) -> str | None:
        """A transfer already made for this withdrawal of this account, found through its
        transfer group.

        Stripe forgets idempotency keys after 24 hours; this look-up is what keeps a very late
        retry from paying twice. A transfer counts only if its metadata names both the
        withdrawal and the account: withdrawal ids on the command topic are the caller's, and
        another account's transfer under the same id must never settle this one unpaid.
        """
        try:
            page = await self._client.v1.transfers.list_async(
                params={"transfer_group": idempotency_key(withdrawal_id), "limit": 10}
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise TransientStripeError(str(exc)) from exc
        except stripe.APIError as exc:
            raise TransientStripeError(str(exc)) from exc
        except stripe.StripeError:
            return None
        for transfer in page.data:
            # A StripeObject is not a dict (stripe >= 13: `.get` raises AttributeError).
            data: dict[str, Any] = transfer.to_dict()
            metadata = data.get("metadata") or {}
            if (
                str(metadata.get("withdrawal_id", "")) == withdrawal_id
                and str(metadata.get("account_id", "")) == account_id
            ):
                return str(data["id"])
        return None

    async def transfer(
        self,
        *,
        withdrawal_id: str,
        account_id: str,
        user_id: str,
        amount_cents: int,
        destination: str,
    ) -> TransferMade | TransferRefused:
        try:
            transfer = await self._client.v1.transfers.create_async(
                params={
                    "amount": amount_cents,
                    "currency": "usd",
                    "destination": destination,
                    "transfer_group": idempotency_key(withdrawal_id),
                    "metadata": {
                        "withdrawal_id": withdrawal_id,
                        "account_id": account_id,
                        "user_id": user_id,
                    },
                },
                options={"idempotency_key": idempotency_key(withdrawal_id)},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise TransientStripeError(str(exc)) from exc
        except stripe.StripeError as exc:
            status = exc.http_status or 0
            if status >= 500 or status == 0 or status == 409:
                # 409: a concurrent request with the same key is still in flight at Stripe.
                raise TransientStripeError(str(exc)) from exc
            code = exc.code or type(exc).__name__
            return TransferRefused(reason=f"stripe_refused: {code}: {exc.user_message or exc}")
        return TransferMade(transfer_id=str(transfer.id))
