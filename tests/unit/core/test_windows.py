"""Time windows: calendar boundaries in a zone (DST, month ends, Monday weeks), rolling spans."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from waystone_cli.core.errors import UsageError
from waystone_cli.core.windows import (
    CALENDAR,
    Window,
    WindowError,
    parse_duration,
    parse_since,
    parse_window,
    window_end,
    window_start,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "now", "tz", "start", "end"),
    [
        # UTC
        ("day", "2026-11-27T15:30", "UTC", "2026-11-27T00:00", "2026-11-28T00:00"),
        ("day", "2026-11-27T00:00", "UTC", "2026-11-27T00:00", "2026-11-28T00:00"),
        ("day", "2026-11-27T23:59:59.999999", "UTC", "2026-11-27T00:00", "2026-11-28T00:00"),
        ("day", "2026-12-31T18:00", "UTC", "2026-12-31T00:00", "2027-01-01T00:00"),
        ("week", "2026-11-27T15:30", "UTC", "2026-11-23T00:00", "2026-11-30T00:00"),  # Friday
        ("week", "2026-11-23T00:00", "UTC", "2026-11-23T00:00", "2026-11-30T00:00"),  # Monday
        ("week", "2026-11-29T23:59", "UTC", "2026-11-23T00:00", "2026-11-30T00:00"),  # Sunday
        ("week", "2026-12-30T10:00", "UTC", "2026-12-28T00:00", "2027-01-04T00:00"),
        ("month", "2026-01-31T23:30", "UTC", "2026-01-01T00:00", "2026-02-01T00:00"),
        ("month", "2026-01-01T00:00", "UTC", "2026-01-01T00:00", "2026-02-01T00:00"),
        ("month", "2026-02-15T12:00", "UTC", "2026-02-01T00:00", "2026-03-01T00:00"),
        ("month", "2028-02-29T12:00", "UTC", "2028-02-01T00:00", "2028-03-01T00:00"),
        ("month", "2026-04-30T12:00", "UTC", "2026-04-01T00:00", "2026-05-01T00:00"),
        ("month", "2026-12-31T23:59", "UTC", "2026-12-01T00:00", "2027-01-01T00:00"),
        # Europe/Paris: +01:00 in winter, +02:00 in summer
        ("day", "2026-11-27T15:30", "Europe/Paris", "2026-11-26T23:00", "2026-11-27T23:00"),
        ("day", "2026-11-27T23:30", "Europe/Paris", "2026-11-27T23:00", "2026-11-28T23:00"),
        # spring forward on 2026-03-29: a 23-hour day
        ("day", "2026-03-29T12:00", "Europe/Paris", "2026-03-28T23:00", "2026-03-29T22:00"),
        ("day", "2026-03-29T00:59", "Europe/Paris", "2026-03-28T23:00", "2026-03-29T22:00"),
        ("day", "2026-03-29T01:00", "Europe/Paris", "2026-03-28T23:00", "2026-03-29T22:00"),
        # fall back on 2026-10-25: a 25-hour day, with 02:30 happening twice
        ("day", "2026-10-25T12:00", "Europe/Paris", "2026-10-24T22:00", "2026-10-25T23:00"),
        ("day", "2026-10-25T00:30", "Europe/Paris", "2026-10-24T22:00", "2026-10-25T23:00"),
        ("day", "2026-10-25T01:30", "Europe/Paris", "2026-10-24T22:00", "2026-10-25T23:00"),
        ("week", "2026-03-29T12:00", "Europe/Paris", "2026-03-22T23:00", "2026-03-29T22:00"),
        ("week", "2026-10-26T09:00", "Europe/Paris", "2026-10-25T23:00", "2026-11-01T23:00"),
        ("month", "2026-03-15T12:00", "Europe/Paris", "2026-02-28T23:00", "2026-03-31T22:00"),
        ("month", "2026-10-15T12:00", "Europe/Paris", "2026-09-30T22:00", "2026-10-31T23:00"),
        # the 31st late in UTC is already the 1st in Paris
        ("month", "2026-01-31T23:30", "Europe/Paris", "2026-01-31T23:00", "2026-02-28T23:00"),
        ("month", "2026-01-31T22:30", "Europe/Paris", "2025-12-31T23:00", "2026-01-31T23:00"),
        ("month", "2026-10-31T23:30", "Europe/Paris", "2026-10-31T23:00", "2026-11-30T23:00"),
        # America/Santiago moves 00:00 -> 01:00 on 2026-09-06: that local day has no midnight
        ("day", "2026-09-05T15:00", "America/Santiago", "2026-09-05T04:00", "2026-09-06T04:00"),
        ("day", "2026-09-06T15:00", "America/Santiago", "2026-09-06T04:00", "2026-09-07T03:00"),
        ("day", "2026-09-07T15:00", "America/Santiago", "2026-09-07T03:00", "2026-09-08T03:00"),
        ("week", "2026-09-01T15:00", "America/Santiago", "2026-08-31T04:00", "2026-09-07T03:00"),
    ],
)
def test_calendar_window_bounds(window: str, now: str, tz: str, start: str, end: str) -> None:
    at = utc(now)
    assert (window_start(window, at, tz), window_end(window, at, tz)) == (utc(start), utc(end))
    assert window_start(window, at, tz).tzinfo is UTC


@pytest.mark.parametrize(
    ("now", "start"),
    [
        # an aware time in another zone is the same instant
        (datetime(2026, 11, 27, 1, 0, tzinfo=ZoneInfo("America/New_York")), "2026-11-27T00:00"),
        (datetime(2026, 11, 26, 20, 0, tzinfo=ZoneInfo("America/New_York")), "2026-11-27T00:00"),
        # a naive time is UTC
        (datetime(2026, 11, 27, 1, 0), "2026-11-27T00:00"),
    ],
)
def test_now_in_any_zone_is_the_same_instant(now: datetime, start: str) -> None:
    assert window_start("day", now, "UTC") == utc(start)


@pytest.mark.parametrize(
    ("window", "start"),
    [
        ("1h", "2026-11-27T14:30"),
        ("90m", "2026-11-27T14:00"),
        ("24h", "2026-11-26T15:30"),
        ("7d", "2026-11-20T15:30"),
        ("30d", "2026-10-28T15:30"),
        ("2w", "2026-11-13T15:30"),
        ("45s", "2026-11-27T15:29:15"),
    ],
)
def test_rolling_window_covers_the_trailing_duration(window: str, start: str) -> None:
    now = utc("2026-11-27T15:30")
    paris = now.astimezone(ZoneInfo("Europe/Paris"))
    assert window_start(window, now, "Europe/Paris") == utc(start)
    assert window_start(window, paris) == utc(start)
    assert window_start(window, paris).tzinfo is UTC
    assert window_end(window, now) is None


def test_rolling_window_ignores_dst() -> None:
    # 24h before the Paris spring-forward noon is 24 real hours, not a local day
    now = utc("2026-03-29T10:00")
    assert window_start("24h", now, "Europe/Paris") == utc("2026-03-28T10:00")
    assert window_start("day", now, "Europe/Paris") == utc("2026-03-28T23:00")


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("day", Window(text="day", calendar="day")),
        ("week", Window(text="week", calendar="week")),
        ("month", Window(text="month", calendar="month")),
        ("1h", Window(text="1h", duration=timedelta(hours=1))),
        ("30d", Window(text="30d", duration=timedelta(days=30))),
        ("2w", Window(text="2w", duration=timedelta(days=14))),
    ],
)
def test_parse_window(text: str, window: Window) -> None:
    assert parse_window(text) == window
    assert window_start(window, utc("2026-11-27T15:30")) == window_start(
        text, utc("2026-11-27T15:30")
    )


def test_calendar_names() -> None:
    assert CALENDAR == ("day", "week", "month")


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        (" 7d ", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        ("365d", timedelta(days=365)),
    ],
)
def test_parse_duration(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_duration("0d"), 'invalid duration "0d" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration("30x"), 'invalid duration "30x" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration("1.5h"), 'invalid duration "1.5h" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration("-1d"), 'invalid duration "-1d" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration("d"), 'invalid duration "d" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration(""), 'invalid duration "" (like 30m, 24h, 7d or 2w)'),
        (lambda: parse_duration("99999999999999w"), 'duration "99999999999999w" is too long'),
        (
            lambda: parse_window("year"),
            'invalid window "year" (day, week, month, or a rolling duration like 1h, 24h, 7d, 30d)',
        ),
        (
            lambda: parse_window("Month"),
            'invalid window "Month" (day, week, month, or a rolling duration like 1h, 24h, 7d, 30d)',
        ),
        (
            lambda: window_start("day", utc("2026-11-27T00:00"), "Mars/Olympus"),
            'unknown time zone "Mars/Olympus"',
        ),
        (
            lambda: window_end("month", utc("2026-11-27T00:00"), "not a zone"),
            'unknown time zone "not a zone"',
        ),
        (
            lambda: window_start("999999d", utc("2026-11-27T00:00")),
            '"999999d" reaches back before the year 1',
        ),
        (
            lambda: parse_since("yesterday", utc("2026-11-27T00:00")),
            'invalid time "yesterday" (a duration like 30d or a date like 2026-11-01)',
        ),
        (
            lambda: parse_since("", utc("2026-11-27T00:00")),
            'invalid time "" (a duration like 30d or a date like 2026-11-01)',
        ),
        (
            lambda: parse_since("2026-13-01", utc("2026-11-27T00:00")),
            'invalid time "2026-13-01" (a duration like 30d or a date like 2026-11-01)',
        ),
    ],
)
def test_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(WindowError) as info:
        call()
    assert str(info.value) == message
    assert isinstance(info.value, UsageError)


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("30d", "2026-10-28T15:30"),
        ("24h", "2026-11-26T15:30"),
        ("2026-11-01", "2026-11-01T00:00"),
        ("2026-11-01T08:30", "2026-11-01T08:30"),
        ("2026-11-01T08:30:00+01:00", "2026-11-01T07:30"),
        ("2026-11-01T08:30:00Z", "2026-11-01T08:30"),
        (" 2026-11-01 ", "2026-11-01T00:00"),
    ],
)
def test_parse_since(text: str, since: str) -> None:
    now = utc("2026-11-27T15:30")
    assert parse_since(text, now) == utc(since)
    assert parse_since(text, now).tzinfo is UTC
    assert parse_since(text, now.replace(tzinfo=None)) == utc(since)
