"""Usage counters: what each user, group and member used, in memory, exact and fast.

Design
------
Each *series* (a user, a group, a user inside a group, or the pool of anonymous
requests) keeps per-minute buckets in parallel ``array('q')`` columns sorted by
minute: cost (integer units of 1e-10 USD, the ledger's ``DECIMAL(18, 10)``, so sums are
exact), input tokens, output tokens and requests.  About 40 bytes per active minute.

A usage query does not scan the buckets: each series caches, per window, the window's
start minute, the index of its first bucket and the running totals.  When time moves on,
buckets that left the window are subtracted (a pointer walk); a charge adds to every
cached total whose window covers its minute.  Calendar windows (day, week, month in the
counters' time zone) are resolved once per window and reused until they roll over.

Precision: rolling windows count whole minutes, so the oldest minute counts in full
(a 30-day window may include up to 59 s more than 30 days: it errs towards blocking).
Calendar boundaries are exact whenever the zone's UTC offset is a whole number of
minutes, which holds for every zone in use since 1972 (only some pre-1900 local mean
times have seconds).  Buckets older than ``keep`` (32 days by default; pass the longest
configured window if longer) are pruned.

A request is charged at the minute it *started* (the ledger row's ``ts``), when it
settles.  Until then its reservation (the estimate: input size plus token cap, and its
estimated cost) counts in every window of every subject it names, and in ``concurrent``.

Overshoot bound
---------------
``decide()`` blocks once usage *plus live reservations* has reached the limit, and the
daemon reserves right after an allowing decision with no ``await`` in between.  So every
admitted request saw all earlier ones, and the admitted estimates sum to less than
``limit + one estimate``.  With estimates at least the actual usage, a budget is
overshot by at most ONE request (40 concurrent requests against a budget worth 5.5 of
them let at most 6 through).  A reservation whose request never settles (a crash)
expires after ``max_age_s`` (15 minutes by default), when ``expire()`` runs.
Unpriced requests reserve and charge $0 (the ``unpriced_blocks`` option refuses them).

Eviction
--------
A quiet series (nothing reserved, no rate entry) may leave memory (``evictable``,
``evict``) and come back from ledger rows summed per minute (``restore``): the same
buckets, so every window reads the same.  ``daemon.request.eviction`` decides when.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from waystone_cli.core.counter_series import Series
from waystone_cli.core.int64 import INT64_MAX, INT64_MIN, saturate
from waystone_cli.core.ratelimit import RateState
from waystone_cli.core.windows import WindowStarts

METRICS = ("cost_usd", "tokens", "input_tokens", "output_tokens", "requests")
COST_SCALE = 10**10
KEEP = timedelta(days=32)

Key = tuple[str, str]


class Subject(NamedTuple):  # a tuple: built for every request (a frozen dataclass costs more)
    """Who a rule acts on: a user, a group, or ``request`` (traffic that names no one)."""

    kind: str
    id: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "request" else f"{self.kind}:{self.id}"


ANONYMOUS = Subject("request")


def member_key(user_id: str, group_id: str) -> Key:
    return ("member", f"{group_id}\x1f{user_id}")


class UsageView(Protocol):
    """What ``decide()`` reads; ``UsageCounters`` implements it."""

    def usage(self, subject: Subject, metric: str, window: str, now: datetime) -> float: ...

    def member_usage(
        self, user_id: str, group_id: str, metric: str, window: str, now: datetime
    ) -> float: ...

    def rate(self, subject: Subject, now: datetime) -> RateState: ...

    def relief(
        self,
        subject: Subject,
        metric: str,
        window: str,
        limit: float,
        now: datetime,
        user_id: str | None = None,
    ) -> float | None: ...


def to_units(cost_usd: float | Decimal | None) -> int:
    """USD as integer units of 1e-10 (None, an unpriced cost, is 0)."""
    if cost_usd is None:
        return 0
    if isinstance(cost_usd, float) and abs(cost_usd) < 1e5:
        # x * 1e10 stays below 2**53 here, so rounding gives the exact nearest unit.
        return round(cost_usd * COST_SCALE)
    cost = Decimal(str(cost_usd))
    if not cost.is_finite():  # an infinite cost saturates; NaN says nothing, as None
        return 0 if cost.is_nan() else saturate(INT64_MAX if cost > 0 else INT64_MIN)
    return saturate(int((cost * COST_SCALE).to_integral_value()))


def series_keys(user_id: str | None, group_id: str | None) -> list[Key]:
    """The series a request or ledger row naming them counts in."""
    keys: list[Key] = []
    if user_id:
        keys.append(("user", user_id))
    if group_id:
        keys.append(("group", group_id))
    if user_id and group_id:
        keys.append(member_key(user_id, group_id))
    return keys or [("request", "")]


def _row_values(values: Sequence[Any]) -> tuple[int, int, int, int]:
    """A ledger row's ``requests, input, output, cost units`` as a bucket's values."""
    requests, tokens_in, tokens_out, units = values
    return (int(units or 0), int(tokens_in), int(tokens_out), int(requests))


def _metric(values: Sequence[int], pending: Sequence[int], metric: str) -> float:
    """A metric from [cost, in, out, requests] totals plus reservations.

    A reservation's tokens count in full towards each token metric: an upper bound,
    since the split between input and output is not known before the answer.
    """
    if metric == "cost_usd":
        return (values[0] + pending[0]) / COST_SCALE
    if metric == "tokens":
        return float(values[1] + values[2] + pending[1])
    if metric == "input_tokens":
        return float(values[1] + pending[1])
    if metric == "output_tokens":
        return float(values[2] + pending[1])
    if metric == "requests":
        return float(values[3] + pending[2])
    raise ValueError(f"unknown metric {metric!r}")


class Evictable(NamedTuple):
    key: Key
    series: Series
    charges: int  # ``series.charges`` when chosen: a charge since keeps it


@dataclass(eq=False, slots=True)
class Reservation:
    """An admitted request's estimate, held until it settles or expires."""

    id: int
    series: tuple[Series, ...]  # of each subject charged (a reserved series is never dropped)
    minute: int
    started: float
    cost_units: int
    tokens: int
    rate_entries: tuple[Any, ...] = field(default=(), repr=False)


class UsageCounters:
    """In-memory usage per subject; implements ``UsageView`` for ``decide()``."""

    def __init__(self, tz: str = "UTC", keep: timedelta = KEEP) -> None:
        self.tz = tz
        self._keep_s = int(max(keep, KEEP).total_seconds())
        self._series: dict[Key, Series] = {}
        self._live: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._clock = WindowStarts(tz)
        # One request reads several windows, reserves and settles at the same ``now``: its
        # timestamp and the windows' start minutes are kept until another ``now`` comes.
        self._now: datetime | None = None
        self._now_s = 0.0
        self._starts: dict[str, int] = {}

    # --- reading --------------------------------------------------------------------

    def usage(self, subject: Subject, metric: str, window: str, now: datetime) -> float:
        return self._usage(subject, metric, window, now)  # a Subject is its own key

    def member_usage(
        self, user_id: str, group_id: str, metric: str, window: str, now: datetime
    ) -> float:
        return self._usage(member_key(user_id, group_id), metric, window, now)

    def rate(self, subject: Subject, now: datetime) -> RateState:
        series = self._series.get(subject)
        if series is None:
            return RateState(0, 0, 0, None)
        if series.rate is None:
            return RateState(0, 0, series.pending[2], None)
        return series.rate.state(self._seconds(now), series.pending[2])

    def relief(
        self,
        subject: Subject,
        metric: str,
        window: str,
        limit: float,
        now: datetime,
        user_id: str | None = None,
    ) -> float | None:
        """Seconds until usage falls below ``limit`` if nothing new arrives; None if never."""
        w = self._clock.window(window)
        if w.calendar is not None:  # the window's end, as cached for its start
            now_s = self._seconds(now)
            return self._clock.end_s(window, now_s, now) - now_s
        key = member_key(user_id, subject.id) if user_id else (subject.kind, subject.id)
        series = self._series.get(key)
        if series is None:
            return 0.0
        now_s = now.timestamp()
        s = series.totals(window, self._clock.start(window, now_s, now))
        value = _metric(s[2:], series.pending, metric)
        for i in range(s[1], len(series.minutes)):
            value -= _metric([col[i] for col in series.cols], (0, 0, 0), metric)
            if value < limit:
                assert w.duration is not None
                leaves = (series.minutes[i] + 1) * 60 + w.duration.total_seconds()
                return max(leaves - now_s, 0.0)
        return None  # reservations alone reach the limit: wait for them to settle

    # --- charging -------------------------------------------------------------------

    def reserve(
        self,
        subjects: Iterable[Subject],
        *,
        user_id: str | None,
        group_id: str | None,
        tokens: int,
        cost_usd: float | None,
        now: datetime,
        rate: bool = True,
    ) -> Reservation:
        """Hold the estimate for ``subjects`` (and the user's share of the group).

        ``rate=False`` (no rate rule configured) leaves the rate windows out: an entry per
        request and subject for 60 s is about 10 MB at 1,200 requests a second.  Like a
        restart, a rate rule added later counts the requests from then on.
        """
        # A Subject is a (kind, id) tuple: it is its own key.
        keys: tuple[Key, ...] = tuple(subjects)
        if user_id and group_id:
            keys += (member_key(user_id, group_id),)
        now_s = self._seconds(now)
        units = to_units(cost_usd)
        entries = []
        charged = []
        all_series = self._series
        for key in keys:
            series = all_series.get(key)
            if series is None:
                series = all_series[key] = Series()
            charged.append(series)
            pending = series.pending
            pending[0] += units
            pending[1] += tokens
            pending[2] += 1
            if rate and key[0] != "member":
                entries.append(series.rate_window().start(now_s, tokens))
        r = Reservation(
            next(self._ids), tuple(charged), int(now_s // 60), now_s, units, tokens, tuple(entries)
        )
        self._live[r.id] = r
        return r

    def settle(
        self,
        reservation: Reservation,
        *,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | Decimal | None,
        now: datetime,
    ) -> None:
        """Replace the estimate with the actual usage (a second settle does nothing)."""
        if self._live.pop(reservation.id, None) is None:
            return
        values = (to_units(cost_usd), tokens_in, tokens_out, 1)
        cutoff = int(self._seconds(now) - self._keep_s) // 60
        minute, units, tokens = reservation.minute, reservation.cost_units, reservation.tokens
        for series in reservation.series:
            pending = series.pending  # the reservation leaves (``_unreserve``, inlined)
            pending[0] -= units
            pending[1] -= tokens
            pending[2] -= 1
            series.add(minute, values)
            if series.minutes[0] < cutoff:
                series.prune(cutoff)
        used = tokens_in + tokens_out
        for entry in reservation.rate_entries:
            entry.settle(used)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without charging (the request was never forwarded)."""
        if self._live.pop(reservation.id, None) is None:
            return
        for series in reservation.series:
            self._unreserve(series, reservation)

    def expire(self, now: datetime, max_age_s: float = 900) -> int:
        """Release reservations older than ``max_age_s`` (crashed requests), prune old
        buckets and forget idle subjects; returns how many reservations expired."""
        now_s = now.timestamp()
        old = [r for r in self._live.values() if now_s - r.started > max_age_s]
        for r in old:
            self.release(r)
        cutoff = int(now_s - self._keep_s) // 60
        for key, series in list(self._series.items()):
            series.prune(cutoff)
            if series.rate is not None:
                series.rate.expire(now_s)
                if series.rate.empty():
                    series.rate = None
            if series.idle():
                del self._series[key]
        return len(old)

    def load(self, rows: Iterable[Sequence[Any]]) -> None:
        """Add ledger rows ``(user_id, group_id, minute, requests, input, output, cost
        units)`` as ``ledger.counters.counter_rows`` returns them (minute = epoch minute)."""
        for user_id, group_id, minute, *values in rows:
            for key in series_keys(user_id, group_id):
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = Series()
                series.add(int(minute), _row_values(values))

    # --- eviction (see ``daemon.request.eviction``) -------------------------------------------

    @property
    def keep(self) -> timedelta:
        """How far back buckets are kept: what a rebuild must read."""
        return timedelta(seconds=self._keep_s)

    @property
    def subjects(self) -> int:
        """Series in memory."""
        return len(self._series)

    def has(self, key: Key) -> bool:
        return key in self._series

    def reserved(self, key: Key) -> bool:
        """Whether a request charging ``key`` is in flight."""
        series = self._series.get(key)
        return series is not None and any(series.pending)

    def evictable(self, *, keep: int, idle_before: int) -> list[Evictable]:
        """Quiet series to drop: those last charged before minute ``idle_before`` and,
        past ``keep`` series, the least recently charged.  The anonymous pool stays."""
        quiet = [
            (series.minutes[-1] if series.minutes else 0, key, series)
            for key, series in self._series.items()
            if key[0] != "request" and series.quiet()
        ]
        over = len(self._series) - keep
        chosen = [q for q in quiet if q[0] < idle_before]
        if over > len(chosen):
            chosen = heapq.nsmallest(over, quiet, key=lambda q: q[0])
        return [Evictable(key, series, series.charges) for _, key, series in chosen]

    def evict(self, chosen: Iterable[Evictable]) -> list[Key]:
        """Drop the chosen series not charged or reserved since; returns their keys."""
        dropped = []
        for key, series, charges in chosen:
            if self._series.get(key) is series and series.charges == charges and series.quiet():
                del self._series[key]
                dropped.append(key)
        return dropped

    def restore(self, key: Key, rows: Iterable[Sequence[Any]]) -> None:
        """Rebuild one evicted series from ledger rows (``load``'s shape) that name it."""
        if key in self._series:
            return
        series = Series()
        for user_id, group_id, minute, *values in rows:
            if key in series_keys(user_id, group_id):
                series.add(int(minute), _row_values(values))
        if series.minutes:
            self._series[key] = series

    @property
    def live(self) -> int:
        """Reservations not yet settled."""
        return len(self._live)

    # --- internals ------------------------------------------------------------------

    def _usage(self, key: Key, metric: str, window: str, now: datetime) -> float:
        series = self._series.get(key)
        if series is None:
            return 0.0
        now_s = self._seconds(now)
        start = self._starts.get(window)
        if start is None:
            start = self._starts[window] = self._clock.start(window, now_s, now)
        s = series.totals(window, start)
        return _metric(s[2:], series.pending, metric)

    def _seconds(self, now: datetime) -> float:
        if now is not self._now:
            self._now, self._now_s, self._starts = now, now.timestamp(), {}
        return self._now_s

    def _unreserve(self, series: Series, r: Reservation) -> None:
        series.pending[0] -= r.cost_units
        series.pending[1] -= r.tokens
        series.pending[2] -= 1
