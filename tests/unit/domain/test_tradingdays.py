"""Trading days (CONTRACT section 4a): resets around the days a zone's clocks change.

Every expected instant below is computed by hand from the zone's offsets, not by the code:
Europe/Prague is CET (+01:00) / CEST (+02:00); in 2026 it springs forward on 03-29 at 02:00 CET
(01:00Z, to 03:00 CEST) and falls back on 10-25 at 03:00 CEST (01:00Z, to 02:00 CET).
America/Chicago is CST (-06:00) / CDT (-05:00); in 2026 it springs forward on 03-08 at 02:00 CST
(08:00Z, to 03:00 CDT) and falls back on 11-01 at 02:00 CDT (07:00Z, to 01:00 CST).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.tradingdays import DayClock, DayOutOfRange, InvalidDayClock

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

PRAGUE = "Europe/Prague"
CHICAGO = "America/Chicago"
H = timedelta(hours=1)
M = timedelta(minutes=1)


def utc(text: str) -> datetime:
    """`2026-03-28T23:00:00` or with `.ffffff`, read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (zone, reset_at, local date, its reset instant in UTC, the day's length)
RESETS = [
    # Prague, midnight: the day of the change itself is 23 h / 25 h.
    (PRAGUE, "00:00", "2026-03-28", "2026-03-27T23:00:00", 24 * H),
    (PRAGUE, "00:00", "2026-03-29", "2026-03-28T23:00:00", 23 * H),
    (PRAGUE, "00:00", "2026-03-30", "2026-03-29T22:00:00", 24 * H),
    (PRAGUE, "00:00", "2026-10-24", "2026-10-23T22:00:00", 24 * H),
    (PRAGUE, "00:00", "2026-10-25", "2026-10-24T22:00:00", 25 * H),
    (PRAGUE, "00:00", "2026-10-26", "2026-10-25T23:00:00", 24 * H),
    # Prague, 17:00: the change falls in the day that starts the evening before.
    (PRAGUE, "17:00", "2026-03-28", "2026-03-28T16:00:00", 23 * H),
    (PRAGUE, "17:00", "2026-03-29", "2026-03-29T15:00:00", 24 * H),
    (PRAGUE, "17:00", "2026-10-24", "2026-10-24T15:00:00", 25 * H),
    (PRAGUE, "17:00", "2026-10-25", "2026-10-25T16:00:00", 24 * H),
    # Prague, 02:30: skipped on 03-29 (the reset is 03:00 CEST, the end of the gap), repeated on
    # 10-25 (the reset is the first 02:30, CEST).
    (PRAGUE, "02:30", "2026-03-28", "2026-03-28T01:30:00", 23 * H + 30 * M),
    (PRAGUE, "02:30", "2026-03-29", "2026-03-29T01:00:00", 23 * H + 30 * M),
    (PRAGUE, "02:30", "2026-03-30", "2026-03-30T00:30:00", 24 * H),
    (PRAGUE, "02:30", "2026-10-24", "2026-10-24T00:30:00", 24 * H),
    (PRAGUE, "02:30", "2026-10-25", "2026-10-25T00:30:00", 25 * H),
    (PRAGUE, "02:30", "2026-10-26", "2026-10-26T01:30:00", 24 * H),
    # Prague, 02:00: the very first skipped minute, and the first repeated one.
    (PRAGUE, "02:00", "2026-03-28", "2026-03-28T01:00:00", 24 * H),
    (PRAGUE, "02:00", "2026-03-29", "2026-03-29T01:00:00", 23 * H),
    (PRAGUE, "02:00", "2026-10-25", "2026-10-25T00:00:00", 25 * H),
    (PRAGUE, "02:00", "2026-10-26", "2026-10-26T01:00:00", 24 * H),
    # Chicago, midnight.
    (CHICAGO, "00:00", "2026-03-07", "2026-03-07T06:00:00", 24 * H),
    (CHICAGO, "00:00", "2026-03-08", "2026-03-08T06:00:00", 23 * H),
    (CHICAGO, "00:00", "2026-03-09", "2026-03-09T05:00:00", 24 * H),
    (CHICAGO, "00:00", "2026-10-31", "2026-10-31T05:00:00", 24 * H),
    (CHICAGO, "00:00", "2026-11-01", "2026-11-01T05:00:00", 25 * H),
    (CHICAGO, "00:00", "2026-11-02", "2026-11-02T06:00:00", 24 * H),
    # Chicago, 17:00 (the futures session's reset).
    (CHICAGO, "17:00", "2026-03-07", "2026-03-07T23:00:00", 23 * H),
    (CHICAGO, "17:00", "2026-03-08", "2026-03-08T22:00:00", 24 * H),
    (CHICAGO, "17:00", "2026-10-31", "2026-10-31T22:00:00", 25 * H),
    (CHICAGO, "17:00", "2026-11-01", "2026-11-01T23:00:00", 24 * H),
    # Chicago, 02:30: skipped on 03-08 (reset at 03:00 CDT); 11-01 02:30 exists once (CST).
    (CHICAGO, "02:30", "2026-03-07", "2026-03-07T08:30:00", 23 * H + 30 * M),
    (CHICAGO, "02:30", "2026-03-08", "2026-03-08T08:00:00", 23 * H + 30 * M),
    (CHICAGO, "02:30", "2026-03-09", "2026-03-09T07:30:00", 24 * H),
    (CHICAGO, "02:30", "2026-10-31", "2026-10-31T07:30:00", 25 * H),
    (CHICAGO, "02:30", "2026-11-01", "2026-11-01T08:30:00", 24 * H),
    # Chicago, 01:30: inside the repeated hour on 11-01 (first occurrence, CDT).
    (CHICAGO, "01:30", "2026-03-08", "2026-03-08T07:30:00", 23 * H),
    (CHICAGO, "01:30", "2026-10-31", "2026-10-31T06:30:00", 24 * H),
    (CHICAGO, "01:30", "2026-11-01", "2026-11-01T06:30:00", 25 * H),
    (CHICAGO, "01:30", "2026-11-02", "2026-11-02T07:30:00", 24 * H),
]


@pytest.mark.parametrize(("tz", "reset_at", "day", "start", "length"), RESETS)
def test_reset_instants_and_day_lengths_around_dst_changes(
    tz: str, reset_at: str, day: str, start: str, length: timedelta
) -> None:
    clock = DayClock(tz, reset_at)
    local_date = date.fromisoformat(day)
    assert clock.reset_instant(local_date) == utc(start)
    assert clock.day_start(local_date) == utc(start)
    assert clock.reset_instant(local_date).tzinfo is UTC
    assert clock.day_length(local_date) == length
    assert clock.day_end(local_date) == utc(start) + length
    assert clock.day_end(local_date) == clock.day_start(local_date + timedelta(days=1))


# (zone, reset_at, instant in UTC, its trading day): instants exactly at a reset open the new
# day; one microsecond earlier still belongs to the previous one.
DAYS = [
    (PRAGUE, "00:00", "2026-03-28T23:00:00", "2026-03-29"),
    (PRAGUE, "00:00", "2026-03-28T22:59:59.999999", "2026-03-28"),
    (PRAGUE, "00:00", "2026-03-29T21:59:59.999999", "2026-03-29"),
    (PRAGUE, "00:00", "2026-03-29T22:00:00", "2026-03-30"),
    (PRAGUE, "00:00", "2026-10-25T22:59:59.999999", "2026-10-25"),  # 23:59:59.999999 CET
    (PRAGUE, "00:00", "2026-10-25T23:00:00", "2026-10-26"),
    # 01:59:59.999999 CET on 03-29 is still the 03-28 day: its reset is at 03:00 CEST.
    (PRAGUE, "02:30", "2026-03-29T00:59:59.999999", "2026-03-28"),
    (PRAGUE, "02:30", "2026-03-29T01:00:00", "2026-03-29"),
    (PRAGUE, "02:30", "2026-10-25T00:29:59.999999", "2026-10-24"),
    (PRAGUE, "02:30", "2026-10-25T00:30:00", "2026-10-25"),  # first 02:30 (CEST)
    (PRAGUE, "02:30", "2026-10-25T01:30:00", "2026-10-25"),  # second 02:30 (CET): same day
    (PRAGUE, "02:30", "2026-10-26T01:29:59.999999", "2026-10-25"),
    (PRAGUE, "02:30", "2026-10-26T01:30:00", "2026-10-26"),
    (PRAGUE, "17:00", "2026-03-29T14:59:59.999999", "2026-03-28"),  # 16:59:59 CEST on 03-29
    (PRAGUE, "17:00", "2026-03-29T15:00:00", "2026-03-29"),
    (PRAGUE, "17:00", "2026-10-25T15:59:59.999999", "2026-10-24"),  # 16:59:59 CET on 10-25
    (PRAGUE, "17:00", "2026-10-25T16:00:00", "2026-10-25"),
    (CHICAGO, "00:00", "2026-11-01T04:59:59.999999", "2026-10-31"),
    (CHICAGO, "00:00", "2026-11-01T05:00:00", "2026-11-01"),
    (CHICAGO, "00:00", "2026-11-02T05:59:59.999999", "2026-11-01"),  # 23:59:59 CST on 11-01
    (CHICAGO, "00:00", "2026-11-02T06:00:00", "2026-11-02"),
    (CHICAGO, "17:00", "2026-03-08T21:59:59.999999", "2026-03-07"),  # 16:59:59 CDT on 03-08
    (CHICAGO, "17:00", "2026-03-08T22:00:00", "2026-03-08"),
    (CHICAGO, "17:00", "2026-11-01T22:59:59.999999", "2026-10-31"),  # 16:59:59 CST on 11-01
    (CHICAGO, "17:00", "2026-11-01T23:00:00", "2026-11-01"),
    (CHICAGO, "02:30", "2026-03-08T07:59:59.999999", "2026-03-07"),  # 01:59:59 CST
    (CHICAGO, "02:30", "2026-03-08T08:00:00", "2026-03-08"),  # 03:00 CDT
    (CHICAGO, "01:30", "2026-11-01T06:29:59.999999", "2026-10-31"),
    (CHICAGO, "01:30", "2026-11-01T06:30:00", "2026-11-01"),  # first 01:30 (CDT)
    (CHICAGO, "01:30", "2026-11-01T07:30:00", "2026-11-01"),  # second 01:30 (CST)
    (CHICAGO, "01:30", "2026-11-02T07:29:59.999999", "2026-11-01"),
    (CHICAGO, "01:30", "2026-11-02T07:30:00", "2026-11-02"),
]


@pytest.mark.parametrize(("tz", "reset_at", "instant", "day"), DAYS)
def test_the_day_of_an_instant_at_and_just_before_each_reset(
    tz: str, reset_at: str, instant: str, day: str
) -> None:
    assert DayClock(tz, reset_at).day_of(utc(instant)) == date.fromisoformat(day)


def test_next_reset_is_strictly_after_the_instant() -> None:
    clock = DayClock(PRAGUE, "00:00")
    assert clock.next_reset(utc("2026-03-28T22:59:59.999999")) == utc("2026-03-28T23:00:00")
    assert clock.next_reset(utc("2026-03-28T23:00:00")) == utc("2026-03-29T22:00:00")
    assert clock.next_reset(utc("2026-10-25T12:00:00")) == utc("2026-10-25T23:00:00")
    chicago = DayClock(CHICAGO, "17:00")
    assert chicago.next_reset(utc("2026-11-01T22:00:00")) == utc("2026-11-01T23:00:00")


def test_instants_in_any_zone_are_taken_by_their_moment_and_naive_ones_are_refused() -> None:
    clock = DayClock(PRAGUE, "02:30")
    prague = ZoneInfo(PRAGUE)
    first = datetime(2026, 10, 25, 2, 29, tzinfo=prague, fold=0)  # 00:29Z, before the reset
    second = datetime(2026, 10, 25, 2, 29, tzinfo=prague, fold=1)  # 01:29Z, after it
    assert clock.day_of(first) == date(2026, 10, 24)
    assert clock.day_of(second) == date(2026, 10, 25)
    with pytest.raises(ValueError, match="naive"):
        clock.day_of(datetime(2026, 10, 25, 12, 0))


def test_the_default_clock_is_utc_midnight() -> None:
    clock = DayClock()
    assert clock == DayClock("UTC", "00:00")
    assert clock.reset_instant(date(2026, 11, 23)) == utc("2026-11-23T00:00:00")
    assert clock.day_of(utc("2026-11-23T23:59:59.999999")) == date(2026, 11, 23)
    assert clock.day_of(utc("2026-11-24T00:00:00")) == date(2026, 11, 24)
    assert clock.reset_time == time(0, 0)


def test_a_day_the_zone_skips_whole_is_empty() -> None:
    # Samoa moved across the date line: 2011-12-29 24:00 (-10:00) was 2011-12-31 00:00 (+14:00),
    # at 2011-12-30T10:00Z. With a midnight reset the 30th starts and ends at that instant.
    clock = DayClock("Pacific/Apia", "00:00")
    jump = utc("2011-12-30T10:00:00")
    assert clock.day_start(date(2011, 12, 30)) == jump
    assert clock.day_end(date(2011, 12, 30)) == jump
    assert clock.day_length(date(2011, 12, 29)) == 24 * H
    assert clock.day_of(jump - timedelta(microseconds=1)) == date(2011, 12, 29)
    assert clock.day_of(jump) == date(2011, 12, 31)
    # With a noon reset the 30th is the 12 h from the jump to 12-31 12:00 (+14:00).
    noon = DayClock("Pacific/Apia", "12:00")
    assert noon.day_start(date(2011, 12, 30)) == jump
    assert noon.day_length(date(2011, 12, 30)) == 12 * H


def test_days_beyond_the_calendar_are_refused_cleanly() -> None:
    with pytest.raises(DayOutOfRange):
        DayClock("Etc/GMT+12", "23:59").day_end(date.max)
    with pytest.raises(DayOutOfRange):
        DayClock("Etc/GMT-14").day_of(datetime.max.replace(tzinfo=UTC))
    assert isinstance(DayOutOfRange("x"), ValueError)


@pytest.mark.parametrize(
    "tz",
    [
        "Mars/Olympus_Mons",
        "",
        "europe/prague",
        "Europe",
        "Europe/Prague ",
        "localtime",
        "posixrules",
        "/etc/localtime",
        "../../etc/passwd",
        "Europe/../Europe/Prague",
        "UTC\x00",
        "A" * 100,
        5,
        None,
    ],
)
def test_unknown_zones_are_refused(tz: object) -> None:
    with pytest.raises(InvalidDayClock) as info:
        DayClock(tz, "00:00")  # type: ignore[arg-type]
    assert info.value.key == "reset_tz"
    assert str(info.value).startswith("reset_tz ")


@pytest.mark.parametrize(
    "reset_at", ["24:00", "23:60", "7:00", "07:0", "0700", "07:00:00", " 07:00", "", 700, None]
)
def test_bad_reset_times_are_refused(reset_at: object) -> None:
    with pytest.raises(InvalidDayClock) as info:
        DayClock("UTC", reset_at)  # type: ignore[arg-type]
    assert info.value.key == "reset_at"


@pytest.mark.parametrize(
    ("tz", "reset_at"),
    [("UTC", "23:59"), ("Etc/GMT+5", "00:00"), ("America/Argentina/Buenos_Aires", "09:30")],
)
def test_good_clocks_are_accepted(tz: str, reset_at: str) -> None:
    assert DayClock(tz, reset_at).tz == tz


# Zones with unusual changes: at midnight (Santiago, Havana), by 30 minutes (Lord Howe), odd
# offsets (Kathmandu, St John's), a skipped date (Apia).
ZONES = [
    "UTC",
    PRAGUE,
    CHICAGO,
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Apia",
]
EMPTY_DAYS = {("Pacific/Apia", date(2011, 12, 30))}

clocks = st.builds(
    DayClock,
    tz=st.sampled_from(ZONES),
    reset_at=st.builds(
        "{:02d}:{:02d}".format, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59])
    ),
)
days = st.dates(min_value=date(1971, 1, 1), max_value=date(2060, 12, 31))
instants = st.datetimes(
    min_value=datetime(1971, 1, 2), max_value=datetime(2060, 12, 30), timezones=st.just(UTC)
)


@PROPERTY_SETTINGS
@given(clock=clocks, day=days)
def test_days_are_contiguous_increasing_and_contain_their_own_start(
    clock: DayClock, day: date
) -> None:
    start, end = clock.day_start(day), clock.day_end(day)
    nxt = day + timedelta(days=1)
    assert end == clock.day_start(nxt)
    assert clock.reset_instant(day) == start
    # The reset is the first instant the wall clock reads the reset time or later.
    wall = datetime.combine(day, clock.reset_time)
    zone = ZoneInfo(clock.tz)
    assert start.astimezone(zone).replace(tzinfo=None) >= wall
    before = start - timedelta(microseconds=1)
    assert before.astimezone(zone).replace(tzinfo=None) < wall
    if (clock.tz, day) in EMPTY_DAYS and clock.reset_at == "00:00":
        assert start == end
        return
    assert start < end
    assert clock.day_of(start) == day
    assert clock.day_of(end - timedelta(microseconds=1)) == day
    if (clock.tz, nxt) not in EMPTY_DAYS:
        assert clock.day_of(end) == nxt


@PROPERTY_SETTINGS
@given(clock=clocks, instant=instants)
def test_every_instant_lies_in_exactly_its_day(clock: DayClock, instant: datetime) -> None:
    day = clock.day_of(instant)
    assert clock.day_start(day) <= instant < clock.day_end(day)
    assert clock.next_reset(instant) == clock.day_end(day)
    assert clock.next_reset(instant) > instant
    # The trading day is the local date or the one before it (the reset is within the date).
    local = instant.astimezone(ZoneInfo(clock.tz)).date()
    assert day in (local, local - timedelta(days=1)) or clock.tz == "Pacific/Apia"
