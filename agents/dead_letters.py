"""Dead letters: the original bytes go to `<topic>.dlq` with the reason in headers.

A record the broker took can still be too large to send again: Faust's producer refuses
records over 1,000,000 bytes while the broker accepts a little more, and the dead letter adds
headers. Such a value (or key) is cut to its first DLQ_KEEP_BYTES bytes, with headers naming
its full size and SHA-256, instead of failing the send: a failed send would stop the worker
before the commit, and it would read the same record again at every restart.
"""

from __future__ import annotations

import hashlib
import logging

import faust

from app.durable import send_durable
from app.faust_app import FundedFlow
from app.topics import dlq

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000
# What a dead letter may carry of the original key or value (well under the producer's limit).
DLQ_MAX_BYTES = 900_000
DLQ_KEEP_BYTES = 256 * 1024


def bounded(name: str, data: bytes | None) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """`data` as a dead letter can carry it, and the headers that say what was cut."""
    if data is None or len(data) <= DLQ_MAX_BYTES:
        return data, []
    return data[:DLQ_KEEP_BYTES], [
        (f"{name}-truncated-from", str(len(data)).encode()),
        (f"{name}-sha256", hashlib.sha256(data).hexdigest().encode()),
    ]


async def send_dead_letter(
    ff: FundedFlow, base_topic: str, event: faust.types.EventT[bytes], reason: str
) -> None:
    msg = event.message
    # The reason may quote the input (an id, a parser's message): bounded, and always UTF-8.
    reason = reason[:MAX_REASON_CHARS]
    log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
    key, key_cut = bounded("key", msg.key)
    value, value_cut = bounded("value", msg.value if msg.value is not None else b"")
    await send_durable(
        ff.topic(dlq(base_topic)),
        key=key,
        value=value or b"",
        headers=[
            ("reason", reason.encode("utf-8", errors="backslashreplace")),
            ("source-topic", msg.topic.encode()),
            ("source-partition", str(msg.partition).encode()),
            ("source-offset", str(msg.offset).encode()),
            *key_cut,
            *value_cut,
        ],
    )
    ff.extras.setdefault("dead_letters", {}).setdefault(base_topic, 0)
    ff.extras["dead_letters"][base_topic] += 1
