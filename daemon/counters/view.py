"""What ``decide()`` reads when the counters live in Redis: the last values Redis sent.

Every admission's script call answers with the current value of each limit it tested,
and those answers are kept here, per (subject, window, metric) and per subject's rate
window.  A decision made from them may be stale (another instance charged since); the
script then refuses to reserve and the decision is made again from its fresh answer.
A value never seen reads as 0: the first request of a subject is decided as if it had
used nothing, and corrected by the script if it has.

``relief`` (a refusal's Retry-After) is exact for calendar windows (their end); for a
rolling window it is one minute, the counters' bucket: a hint to retry, not a promise.
"""

from __future__ import annotations

from datetime import datetime

from waystone_cli.core.counters import Subject
from waystone_cli.core.ratelimit import RateState
from waystone_cli.core.windows import WindowStarts

ROLLING_RELIEF_S = 60.0
# Values kept before the view starts again from nothing (each is re-learnt on use).
MAX_VALUES = 200_000


def subject_key(subject: Subject) -> str:
    """The subject's name in Redis keys: ``u:ID``, ``g:ID`` or ``r:``."""
    return f"{subject.kind[0]}:{subject.id}"


def member_key(user_id: str, group_id: str) -> str:
    return f"m:{group_id}\x1f{user_id}"


class RedisView:
    """The mirror of the Redis counters that ``decide()`` reads (``UsageView``)."""

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self.clock = WindowStarts(tz)
        self.values: dict[tuple[str, str, str], float] = {}
        self.rates: dict[str, list[float]] = {}  # requests, tokens, concurrent, reset_at

    # --- UsageView ----------------------------------------------------------------------

    def usage(self, subject: Subject, metric: str, window: str, now: datetime) -> float:
        return self.values.get((subject_key(subject), window, metric), 0.0)

    def member_usage(
        self, user_id: str, group_id: str, metric: str, window: str, now: datetime
    ) -> float:
        return self.values.get((member_key(user_id, group_id), window, metric), 0.0)

    def rate(self, subject: Subject, now: datetime) -> RateState:
        r = self.rates.get(subject_key(subject))
        if r is None:
            return RateState(0, 0, 0, None)
        return RateState(int(r[0]), int(r[1]), int(r[2]), r[3] or None)

    def relief(
        self,
        subject: Subject,
        metric: str,
        window: str,
        limit: float,
        now: datetime,
        user_id: str | None = None,
    ) -> float | None:
        if self.clock.window(window).calendar is None:
            return ROLLING_RELIEF_S
        now_s = now.timestamp()
        return self.clock.end_s(window, now_s, now) - now_s

    def learn(self, key: tuple[str, str, str], value: float) -> None:
        if len(self.values) >= MAX_VALUES:
            self.values.clear()
        self.values[key] = value
