"""Trading days of a rule pack (CONTRACT section 4a, "Trading days"), exact and deterministic.

A `DayClock` is a zone (`reset_tz`, an IANA name) and a local reset time (`reset_at`, `HH:MM`).

Conventions, all decided on the zone's rules alone (never on the machine's clock or zone):

- The reset instant of local date *d* is the first instant at which the zone's wall clock reads
  *d* `reset_at` or later. For a wall time that exists once it is simply that time. For one a
  DST change skips (spring forward) it is the first instant after the gap: with a 02:00 -> 03:00
  gap, a 02:30 reset falls at 03:00 new time. For one that occurs twice (fall back) it is the
  first occurrence (fold=0).
- Trading day *d* runs from the reset instant of *d*, inclusive, to the reset instant of *d + 1*,
  exclusive. Days are therefore contiguous and never overlap; a DST change makes its day 23 h or
  25 h long (or 23.5 h twice, when the reset itself is in the gap).
- A day is empty only when the clock jumps over the whole stretch from one reset time to the
  next: Pacific/Apia went from 2011-12-29 24:00 straight to 2011-12-31 00:00, so with a 00:00
  reset day 2011-12-30 starts and ends at the same instant, no instant belongs to it and
  `day_of` never returns it (with a 12:00 reset it is the 12 h from the jump to 12-31 12:00).
- Every instant handed out is an aware UTC `datetime`; instants taken in may be in any zone but
  never naive. A date or instant outside what `datetime` can hold raises `DayOutOfRange`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_RESET_AT",
    "DEFAULT_RESET_TZ",
    "DayClock",
    "DayOutOfRange",
    "InvalidDayClock",
]

DEFAULT_RESET_TZ = "UTC"
DEFAULT_RESET_AT = "00:00"

# IANA names are short paths of letters, digits and `_+-` (e.g. America/Argentina/Buenos_Aires).
_ZONE_NAME_RE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_MAX_ZONE_NAME = 64
# Files the system zone directory may hold that are no zone of their own: `localtime` follows
# the machine's setting and `posixrules` a distribution's choice, so days would differ by host.
_MACHINE_ALIASES = frozenset({"localtime", "posixrules"})
_RESET_AT_RE = re.compile(r"(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9])")
_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


class InvalidDayClock(ValueError):
    """A zone or reset time that cannot define trading days; `key` is the contract's term
    (`reset_tz` or `reset_at`) and `detail` says what is wrong with it."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key} {detail}")


class DayOutOfRange(ValueError):
    """A trading day or reset instant beyond what `datetime` can represent (years 1-9999)."""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_zone(tz: object) -> None:
    if not isinstance(tz, str):
        raise InvalidDayClock("reset_tz", "must be a string naming an IANA time zone")
    if len(tz) > _MAX_ZONE_NAME or _ZONE_NAME_RE.fullmatch(tz) is None or tz in _MACHINE_ALIASES:
        raise InvalidDayClock("reset_tz", f"is not an IANA time zone name: {_describe(tz)}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidDayClock(
            "reset_tz", f"is not a known IANA time zone: {_describe(tz)}"
        ) from None


def _check_reset_at(reset_at: object) -> None:
    if not isinstance(reset_at, str) or _RESET_AT_RE.fullmatch(reset_at) is None:
        raise InvalidDayClock(
            "reset_at", f"must be a local time HH:MM from 00:00 to 23:59, got {_describe(reset_at)}"
        )


def _as_utc(instant: datetime) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("refusing a naive datetime: trading days need an aware instant")
    return instant.astimezone(UTC)


@dataclass(frozen=True)
class DayClock:
    """The zone and local reset time that cut time into trading days (default UTC 00:00).

    Both terms are validated on construction (`InvalidDayClock`): `tz` must be a zone that
    `zoneinfo` knows under a plain IANA name (`localtime` and `posixrules`, which depend on the
    machine, are refused), `reset_at` a zero-padded `HH:MM` from 00:00 to 23:59.
    """

    tz: str = DEFAULT_RESET_TZ
    reset_at: str = DEFAULT_RESET_AT

    def __post_init__(self) -> None:
        _check_zone(self.tz)
        _check_reset_at(self.reset_at)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # ZoneInfo keeps its own cache of loaded zones

    @property
    def reset_time(self) -> time:
        hour, minute = self.reset_at.split(":")
        return time(int(hour), int(minute))

    def _wall(self, instant: datetime) -> datetime:
        """The zone's naive wall-clock reading at a UTC instant."""
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def reset_instant(self, local_date: date) -> datetime:
        """The reset instant (aware UTC) on `local_date`: the first instant at which the wall
        clock reads `local_date` `reset_at` or later (after a skipped time: the end of the gap;
        for a repeated time: its first occurrence)."""
        try:
            return self._first_reading_at_or_after(datetime.combine(local_date, self.reset_time))
        except OverflowError:
            raise DayOutOfRange(f"no reset instant for {local_date.isoformat()}") from None

    def _first_reading_at_or_after(self, wall: datetime) -> datetime:
        zone = self.zone
        # fold=0 is the first occurrence of a repeated time; for a skipped one zoneinfo (PEP 495)
        # applies the offset from before the change, which lands after the gap.
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if self._wall(first) == wall:
            return first
        # `wall` is skipped: fold=1 applies the offset from after the change and lands before
        # the gap. The change lies between the two; find its first instant exactly, to the
        # microsecond, by bisection on "the wall clock already reads `wall` or later".
        other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        before, after = min(first, other), max(first, other)
        if not (self._wall(before) < wall <= self._wall(after)):  # pragma: no cover - zone data
            raise DayOutOfRange(f"zone {self.tz} gives no instant for {wall.isoformat()}")
        while after - before > _ONE_MICROSECOND:
            middle = before + (after - before) // 2
            if self._wall(middle) >= wall:
                after = middle
            else:
                before = middle
        return after

    def day_start(self, day: date) -> datetime:
        """The first instant of trading day `day` (its reset instant), aware UTC."""
        return self.reset_instant(day)

    def day_end(self, day: date) -> datetime:
        """The instant trading day `day` ends, exclusive: the reset instant of the next date."""
        try:
            following = day + _ONE_DAY
        except OverflowError:
            raise DayOutOfRange(f"no trading day after {day.isoformat()}") from None
        return self.reset_instant(following)

    def day_length(self, day: date) -> timedelta:
        """`day_end(day) - day_start(day)`: 24 h on most days, 23 h / 25 h on DST days."""
        return self.day_end(day) - self.day_start(day)

    def day_of(self, instant: datetime) -> date:
        """The trading day containing `instant` (aware, any zone): the day whose start is at or
        before it and whose end is after it. An instant exactly at a reset opens the new day."""
        moment = _as_utc(instant)
        try:
            day = self._wall(moment).date()
            # The local date is at most a day off the trading day (the reset is within that
            # date); zones whose clocks jump back across midnight may need one step more.
            while self.reset_instant(day) > moment:
                day -= _ONE_DAY
            while self.day_end(day) <= moment:
                day += _ONE_DAY
        except OverflowError:
            raise DayOutOfRange(f"no trading day for {moment.isoformat()}") from None
        return day

    def next_reset(self, instant: datetime) -> datetime:
        """The first reset strictly after `instant`: the end of the day containing it (so an
        instant exactly at a reset gets the following one)."""
        return self.day_end(self.day_of(instant))
