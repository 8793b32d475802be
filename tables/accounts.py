"""The account tables: the account's value, its applied-ids memory and its withdrawal archive.

`accounts` holds one value per account, `{"state": AccountState.to_dict(), "outbox": [...],
"offsets": {"topic:partition": offset}}`, and its size is bounded whatever the account's age
(domain/state.py states the bounds; tests/unit/domain/test_bounds.py builds the largest value):

- `offsets`: the highest input offset applied, per input partition (two at most: trades and
  the account commands). Kafka's own redelivery after a crash re-reads offsets at or below it:
  recognised exactly, in O(1), whatever the history.
- `outbox`: the facts of the last OUTBOX_LIMIT inputs that produced any, with the Kafka
  position (`topic:partition:offset`) of the message that caused them. If a worker dies after
  its local store took a write but before the facts reached the broker, the same message is
  read again after the restart; because it is the very same message, its facts are sent again
  under the same ids instead of being lost. A producer's redelivery of the event is another
  message at another offset and sends nothing.

`applied-ids` keeps every input id an account applied (key `account_id/event_id`, value the
`Remembered` entry) for the redelivery window (`FUNDEDFLOW_REDELIVERY_WINDOW_HOURS`, 72 h by
default): a producer's redelivery at a new offset within it is recognised, and nothing an
outside party sends can evict an entry sooner (hardening defect 2: the old 10,000-slot window
inside the value could be flushed by refused requests). Entries leave by age alone (RocksDB's
TTL here, retention on the changelog), so the table holds the window's inputs, not the history.
`withdrawal-archive` keeps each settled withdrawal once it leaves the value (key
`account_id/withdrawal_id`) (a late
`transfer.reversed` still finds it); PostgreSQL has them for the list route.

Both are written while the account's input is processed, so Faust sends their changelog
records to the partition of that input: they are co-partitioned with the account by
construction, and an account's owner holds all three.
"""

from __future__ import annotations

from typing import Any

from app.faust_app import FundedFlow
from app.topics import ACCOUNTS_TABLE, APPLIED_IDS_TABLE, WITHDRAWAL_ARCHIVE_TABLE
from domain.account import AccountState
from domain.state import legacy_memory

# Inputs that produced facts, kept for re-sending after a crash: Faust commits every second,
# so only the last few can be read again.
OUTBOX_LIMIT = 16

Outbox = list[list[Any]]
Offsets = dict[str, int]


def register(ff: FundedFlow) -> None:
    for name, help_ in (
        (ACCOUNTS_TABLE, "funded accounts by account_id (bounded state + recent facts)"),
        (APPLIED_IDS_TABLE, "every input id an account applied, by account_id/event_id"),
        (WITHDRAWAL_ARCHIVE_TABLE, "settled withdrawals out of the value, by withdrawal_id"),
    ):
        ff.extras[name] = ff.app.Table(
            name,
            default=None,
            partitions=ff.settings.topic_partitions,
            # str keys (JSON-encoded in the changelog): other key types send routed HTTP
            # requests to the wrong worker.
            key_type=str,
            help=help_,
            # Faust's RocksDB defaults hold per partition database (one per active and standby
            # partition of the worker) up to 3 write buffers of 64 MiB and a 2 GiB block
            # cache. These bounds keep a worker's memory in proportion.
            options=rocksdb_options(
                # Applied ids expire after the redelivery window (RocksDB's TTL: an entry is
                # kept at least that long, and dropped by a later compaction), as their
                # changelog does (app/kafka_admin.py): storage follows the input rate over the
                # window, never the account's whole history.
                ttl=ff.settings.redelivery_window_hours * 3600
                if name == APPLIED_IDS_TABLE
                else None
            ),
        )


def rocksdb_options(ttl: int | None = None) -> dict[str, int]:
    # A new dict each time: Faust's store pops keys out of the one it is given.
    options = {
        "write_buffer_size": 8 << 20,
        "max_write_buffer_number": 2,
        "block_cache_size": 32 << 20,
    }
    if ttl is not None:
        options["ttl"] = ttl
    return options


def account_key(account_id: str, item_id: str) -> str:
    """The key of an account's entry in `applied-ids` (an event id) or `withdrawal-archive` (a
    withdrawal id): ids are the producer's or the caller's, so only the pair is unique."""
    return f"{account_id}/{item_id}"


def load(value: dict[str, Any] | None) -> tuple[AccountState | None, Outbox]:
    if not value:
        return None, []
    return AccountState.from_dict(value["state"]), list(value.get("outbox", []))


def load_offsets(value: dict[str, Any] | None) -> Offsets:
    if not value:
        return {}
    return {str(k): int(v) for k, v in (value.get("offsets") or {}).items()}


def legacy_ids(value: dict[str, Any] | None) -> list[tuple[str, tuple[str, str] | None]]:
    """The applied ids a value of the old format kept inside itself (moved out on first load)."""
    if not value:
        return []
    return legacy_memory(value["state"])


def dump(state: AccountState, outbox: Outbox, offsets: Offsets | None = None) -> dict[str, Any]:
    return {"state": state.to_dict(), "outbox": outbox[-OUTBOX_LIMIT:], "offsets": offsets or {}}


def remembered_facts(outbox: Outbox, cause_event_id: str, source: str) -> list[dict[str, Any]]:
    """The facts to send again for a message read a second time (empty for a redelivery)."""
    for cause, origin, facts in outbox:
        if cause == cause_event_id and origin == source:
            return list(facts)
    return []
