"""The accounts table: one value per account, holding everything its single writer needs.

The value is `{"state": AccountState.to_dict(), "outbox": [[cause_event_id, source, [facts]]]}`.
The outbox keeps the facts of the last events that produced any, in the same value as the
state, with the Kafka position (`topic:partition:offset`) of the message that caused them. If a
worker dies after its local store took a write but before the facts reached the broker, the
same message is read again after the restart: it is recognised as applied and, because it is
the very same message, its facts are sent again under the same ids instead of being lost. A
producer's redelivery of the event is another message at another offset and sends nothing.
"""

from __future__ import annotations

from typing import Any

from app.faust_app import FundedFlow
from app.topics import ACCOUNTS_TABLE
from domain.account import AccountState

OUTBOX_LIMIT = 256

Outbox = list[list[Any]]


def register(ff: FundedFlow) -> None:
    ff.extras["accounts"] = ff.app.Table(
        ACCOUNTS_TABLE,
        default=None,
        partitions=ff.settings.topic_partitions,
        # str keys (JSON-encoded in the changelog): other key types send routed HTTP
        # requests to the wrong worker.
        key_type=str,
        help="funded accounts by account_id (state + recent facts)",
        # Faust's RocksDB defaults hold per partition database (one per active and standby
        # partition of the worker) up to 3 write buffers of 64 MiB and a 2 GiB block cache.
        # An account is about 2 KB: these bounds keep a worker's memory in proportion.
        options=rocksdb_options(),
    )


def rocksdb_options() -> dict[str, int]:
    # A new dict each time: Faust's store pops keys out of the one it is given.
    return {
        "write_buffer_size": 8 << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": 32 << 20,
    }


def load(value: dict[str, Any] | None) -> tuple[AccountState | None, Outbox]:
    if not value:
        return None, []
    return AccountState.from_dict(value["state"]), list(value.get("outbox", []))


def dump(state: AccountState, outbox: Outbox) -> dict[str, Any]:
    return {"state": state.to_dict(), "outbox": outbox[-OUTBOX_LIMIT:]}


def remembered_facts(outbox: Outbox, cause_event_id: str, source: str) -> list[dict[str, Any]]:
    """The facts to send again for a message read a second time (empty for a redelivery)."""
    for cause, origin, facts in outbox:
        if cause == cause_event_id and origin == source:
            return list(facts)
    return []
