"""Time windows for budgets and reports.

Calendar windows (``day``, ``week``, ``month``) start at the last boundary in the
configured time zone (weeks start on Monday; a month is the calendar month, not 30
days).  Rolling windows (``1h``, ``24h``, ``7d``, ``30d``, any ``<n><unit>`` with unit
``m``, ``h``, ``d`` or ``w``) cover the trailing duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

CALENDAR = ("day", "week", "month")
_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class WindowError(ValueError):
    pass


@dataclass(frozen=True)
class Window:
    text: str
    calendar: str | None = None
    duration: timedelta | None = None


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise WindowError(f'invalid duration "{text}" (like 30m, 24h, 7d or 2w)')
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


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
        return now - w.duration
    local = now.astimezone(ZoneInfo(tz))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if w.calendar == "week":
        start -= timedelta(days=start.weekday())
    elif w.calendar == "month":
        start = start.replace(day=1)
    return _normalize(start, tz).astimezone(UTC)


def window_end(window: Window | str, now: datetime, tz: str = "UTC") -> datetime | None:
    """When a calendar window rolls over (aware, UTC); None for rolling windows."""
    w = parse_window(window) if isinstance(window, str) else window
    if w.calendar is None:
        return None
    local = window_start(w, now, tz).astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    if w.calendar == "day":
        nxt = local + timedelta(days=1)
    elif w.calendar == "week":
        nxt = local + timedelta(days=7)
    else:
        nxt = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    return _normalize(nxt.replace(tzinfo=ZoneInfo(tz)), tz).astimezone(UTC)


def _normalize(local: datetime, tz: str) -> datetime:
    """Re-attach the zone so a DST change between now and the boundary is respected."""
    return local.replace(tzinfo=None).replace(tzinfo=ZoneInfo(tz))


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``/``--until``: a duration back from now (``30d``) or a date/time (UTC)."""
    try:
        return _aware(now) - parse_duration(text)
    except WindowError:
        pass
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        raise WindowError(f'invalid time "{text}" (a duration like 30d or a date like 2026-11-01)') from None
