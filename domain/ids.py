"""Withdrawal ids carry their account: any worker can route an admin's decision to the owner
without a look-up, and an Idempotency-Key always names the same withdrawal."""

from __future__ import annotations

import re
import uuid

_NAMESPACE = uuid.UUID("6f1f1c4e-2f4b-4d0e-9a51-2d2b8c1f7a10")
_ACCOUNT = re.compile(r"^fa_([0-9a-f]{32})$")
_WITHDRAWAL = re.compile(r"^wd_([0-9a-f]{32})_([0-9a-f]{16})$")


def withdrawal_id_for(account_id: str, user_id: str, idempotency_key: str | None) -> str:
    """A new id; with an Idempotency-Key the same key of the same user gives the same id."""
    m = _ACCOUNT.match(account_id)
    if m is None:
        raise ValueError(f"not a funded account id: {account_id!r}")
    if idempotency_key is None:
        suffix = uuid.uuid4().hex[:16]
    else:
        suffix = uuid.uuid5(_NAMESPACE, f"{user_id}\x00{idempotency_key}").hex[:16]
    return f"wd_{m.group(1)}_{suffix}"


def account_of_withdrawal(withdrawal_id: str) -> str | None:
    m = _WITHDRAWAL.match(withdrawal_id)
    return None if m is None else f"fa_{m.group(1)}"
