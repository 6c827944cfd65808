"""Time windows for budgets and reports.

Calendar windows (``day``, ``week``, ``month``) start at the last boundary in the
configured time zone (weeks start on Monday; a month is the calendar month, not 30
days).  Rolling windows (``1h``, ``24h``, ``7d``, ``30d``, any ``<n><unit>`` with unit
``s``, ``m``, ``h``, ``d`` or ``w``) cover the trailing duration.

Calendar boundaries are computed on the local wall clock and only then turned into an
instant, so a day that DST makes 23 or 25 hours long keeps its true length.  A boundary
that falls in a DST gap (zones that switch at midnight, like America/Santiago) maps to
the instant the gap starts, which is when the new local day really begins.  Every
instant returned is aware and in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from waystone_cli.core.errors import UsageError

CALENDAR = ("day", "week", "month")
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class WindowError(UsageError, ValueError):
    """A window, duration, time or time zone that does not parse."""


@dataclass(frozen=True)
class Window:
    text: str
    calendar: str | None = None
    duration: timedelta | None = None


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise WindowError(f'invalid duration "{text}" (like 30m, 24h, 7d or 2w)')
    try:
        return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:
        raise WindowError(f'duration "{text}" is too long') from None


def parse_window(text: str) -> Window:
    if text in CALENDAR:
        return Window(text=text, calendar=text)
    try:
        return Window(text=text, duration=parse_duration(text))
    except WindowError:
        raise WindowError(
            f'invalid window "{text}" (day, week, month, or a rolling duration like 1h, 24h, 7d, 30d)'
        ) from None


def window_start(window: Window | str, now: datetime, tz: str = "UTC") -> datetime:
    """The first instant inside the window that ends at ``now`` (aware, in UTC)."""
    w = parse_window(window) if isinstance(window, str) else window
    now = _aware(now)
    if w.duration is not None:
        return _back(now, w.duration, w.text)
    zone = _zone(tz)
    return _instant(_local_start(w, now, zone), zone)


def window_end(window: Window | str, now: datetime, tz: str = "UTC") -> datetime | None:
    """When a calendar window rolls over (aware, UTC); None for rolling windows."""
    w = parse_window(window) if isinstance(window, str) else window
    if w.calendar is None:
        return None
    zone = _zone(tz)
    start = _local_start(w, _aware(now), zone)
    if w.calendar == "day":
        nxt = start + timedelta(days=1)
    elif w.calendar == "week":
        nxt = start + timedelta(days=7)
    else:
        nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return _instant(nxt, zone)


def _local_start(w: Window, now: datetime, zone: ZoneInfo) -> datetime:
    """The window's first wall-clock moment (naive, local) for the window holding ``now``."""
    local = now.astimezone(zone).replace(tzinfo=None)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if w.calendar == "week":
        start -= timedelta(days=start.weekday())
    elif w.calendar == "month":
        start = start.replace(day=1)
    return start


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    # fold=0 reads a wall time inside a DST gap with the offset in force before it,
    # which lands exactly on the instant the gap (and so the new day) begins.
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f'unknown time zone "{tz}"') from None


def _back(now: datetime, duration: timedelta, text: str) -> datetime:
    try:
        return (now - duration).astimezone(UTC)
    except OverflowError:
        raise WindowError(f'"{text}" reaches back before the year 1') from None


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``/``--until``: a duration back from now (``30d``) or a date/time.

    A date or a time without an offset is read as UTC; the result is aware, in UTC.
    """
    try:
        duration = parse_duration(text)
    except WindowError:
        pass
    else:
        return _back(_aware(now), duration, text)
    try:
        return _aware(datetime.fromisoformat(text.strip())).astimezone(UTC)
    except ValueError:
        raise WindowError(
            f'invalid time "{text}" (a duration like 30d or a date like 2026-11-01)'
        ) from None


class WindowStarts:
    """Where each window starts, in epoch minutes, as the usage counters sum it: a
    rolling window ``duration`` back from now, a calendar window at its start in ``tz``
    (cached with its end until the window rolls over).  Shared by the in-memory counters
    and the mirror of the Redis ones, so both count from the same minute."""

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = tz
        self._windows: dict[str, Window] = {}
        self._calendar: dict[str, tuple[float, float, int]] = {}  # start s, end s, minute

    def window(self, text: str) -> Window:
        w = self._windows.get(text)
        if w is None:
            w = self._windows[text] = parse_window(text)
        return w

    def start(self, text: str, now_s: float, now: datetime) -> int:
        """The window's first epoch minute."""
        w = self.window(text)
        if w.duration is not None:
            return int((now_s - w.duration.total_seconds()) // 60)
        return self._span(w, text, now_s, now)[2]

    def end_s(self, text: str, now_s: float, now: datetime) -> float:
        """A calendar window's end (epoch seconds)."""
        return self._span(self.window(text), text, now_s, now)[1]

    def _span(self, w: Window, text: str, now_s: float, now: datetime) -> tuple[float, float, int]:
        cached = self._calendar.get(text)
        if cached is not None and cached[0] <= now_s < cached[1]:
            return cached
        start = window_start(w, now, self.tz).timestamp()
        end = window_end(w, now, self.tz)
        assert end is not None
        span = self._calendar[text] = (start, end.timestamp(), int(start // 60))
        return span
