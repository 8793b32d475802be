"""RFC 3339 timestamps (CONTRACT section 2): parsed to aware UTC datetimes, written with `Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["InvalidTimestamp", "format_ts", "format_ts_or_none", "parse_ts", "parse_ts_or_none"]

# RFC 3339 date-time: a full date, `T`, a full time with optional fraction, and a zone.
# `datetime.fromisoformat` alone is too lenient (it takes naive and date-only values).
_RFC3339_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?P<zone>[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class InvalidTimestamp(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_ts(value: object) -> datetime:
    """An aware UTC datetime from an RFC 3339 string; naive or malformed values are refused.

    Fractions finer than a microsecond are truncated (datetime holds microseconds).
    """
    if not isinstance(value, str):
        raise InvalidTimestamp(f"timestamp must be an RFC 3339 string, got {type(value).__name__}")
    return _parse(value)


# A stored account names the same instants on every load (activation, positions, withdrawals):
# parsed once, shared (a datetime is immutable). Refusals are raised, never cached.
@lru_cache(maxsize=8192)
def _parse(value: str) -> datetime:
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise InvalidTimestamp(f"not an RFC 3339 timestamp with a zone: {value[:40]!r}")
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    zone = match.group("zone")
    zone = "+00:00" if zone in ("Z", "z") else zone
    text = f"{match.group('date')}T{match.group('time')}.{frac}{zone}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidTimestamp(f"not a valid date-time: {value[:40]!r}") from exc
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidTimestamp(f"timestamp out of range: {value[:40]!r}") from exc


def format_ts(moment: datetime) -> str:
    """`2026-11-23T10:00:00Z`; microseconds appear only when non-zero (`...10:00:00.250000Z`)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("refusing to format a naive datetime")
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # isoformat: a 4-digit year, microseconds only when non-zero, then "+00:00".
    return utc.isoformat()[:-6] + "Z"


def format_ts_or_none(moment: datetime | None) -> str | None:
    """`format_ts`, with None for no instant."""
    return None if moment is None else format_ts(moment)


def parse_ts_or_none(value: object) -> datetime | None:
    """`parse_ts`, with None for a null."""
    return None if value is None else parse_ts(value)
