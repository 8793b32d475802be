"""Dead letters: the original bytes go to `<topic>.dlq` with the reason in headers."""

from __future__ import annotations

import logging

import faust

from app.durable import send_durable
from app.faust_app import FundedFlow
from app.topics import dlq

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 2000


async def send_dead_letter(
    ff: FundedFlow, base_topic: str, event: faust.types.EventT[bytes], reason: str
) -> None:
    msg = event.message
    # The reason may quote the input (an id, a parser's message): bounded, and always UTF-8.
    reason = reason[:MAX_REASON_CHARS]
    log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
    await send_durable(
        ff.topic(dlq(base_topic)),
        key=msg.key,
        value=msg.value if msg.value is not None else b"",
        headers=[
            ("reason", reason.encode("utf-8", errors="backslashreplace")),
            ("source-topic", msg.topic.encode()),
            ("source-partition", str(msg.partition).encode()),
            ("source-offset", str(msg.offset).encode()),
        ],
    )
    ff.extras.setdefault("dead_letters", {}).setdefault(base_topic, 0)
    ff.extras["dead_letters"][base_topic] += 1
