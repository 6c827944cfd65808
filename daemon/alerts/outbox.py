"""What the request path hands to the alerts: events made in memory, never awaited.

``Outbox`` is called from a request's ``finish()`` (budget thresholds, an unpriced
model) and, once the spike trigger lands, for each spike hit.  It keeps the dedupe keys
already made (``sent``: loaded from the ledger at start for the windows still current,
then grown by every event), so a request whose crossings were all sent costs lookups
in memory and nothing else: no ledger query, no await.  A new event goes on
``fresh`` and wakes the delivery task (``daemon.alerts.delivery``), which stores it in
the ledger and posts it.

Keys are dropped once their window ended (``prune``), and a per-limit mark of how many
thresholds were sent in the current window lets a request past all of them skip the
keys: one lookup per limit.  The keys are this instance's memory only; across instances
the ledger's key on the event id is what keeps an event single (``ledger.alerts.store``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from datetime import datetime

from waystone_cli.core.alerts import (
    UNPRICED,
    AlertEvent,
    Charge,
    Crossing,
    Key,
    Periods,
    SpikeHit,
    key_of,
    reached,
    spike_event,
    spike_key,
    threshold_event,
    threshold_key,
    unpriced_event,
    unpriced_key,
)
from waystone_cli.core.decision import Limit, number

# How often the keys of ended windows are dropped (at the next request after it).
PRUNE_EVERY_S = 600.0
_NONE = (0, 0.0)


class Outbox:
    def __init__(self, tz: str = "UTC") -> None:
        # Each key made or loaded, with when it may be forgotten (its window's end).
        self.sent: dict[Key, float] = {}
        self.fresh: list[AlertEvent] = []
        self.wake = asyncio.Event()
        self._periods = Periods(tz)
        self._threshold_text: dict[float, str] = {}
        # Per limit and window: how many thresholds are known sent, so a request past
        # them all pays one lookup per limit (a cache over ``sent``, pruned with it).
        self._marks: dict[tuple[object, ...], tuple[int, float]] = {}
        self._prune_at = 0.0

    def thresholds(
        self,
        limits: Iterable[Limit],
        thresholds: tuple[float, ...],
        charge: Charge,
        *,
        tz: str,
        now: datetime,
    ) -> None:
        """The ``budget.threshold`` events a settled request makes (``core.alerts``)."""
        periods, now_s = self._periods_in(tz), now.timestamp()
        if now_s >= self._prune_at:
            self.prune(now_s)
        marks = self._marks
        for lim in limits:
            count, used = reached(lim, thresholds, charge)
            if not count:
                continue
            period = periods.period(lim.window, now, now_s)
            mark = (thresholds, lim.subject, lim.ruleset, lim.rule, lim.window, period.text)
            done = marks.get(mark, _NONE)[0]
            if done >= count:
                continue
            for t in thresholds[done:count]:
                crossing = Crossing(lim, t, used)
                key = threshold_key(crossing, period.text, self._text_of(t))
                if key not in self.sent:
                    self.sent[key] = period.end_s
                    self._push(threshold_event(crossing, period.start, now))
            marks[mark] = (count, period.end_s)

    def spike(self, hit: SpikeHit, now: datetime, *, tz: str = "UTC") -> None:
        """One ``spike.detected`` per subject, rule and window."""
        period = self._periods_in(tz).period(hit.window, now, now.timestamp())
        key = spike_key(hit, period.start)
        if key not in self.sent:
            self.sent[key] = period.end_s
            self._push(spike_event(hit, period.start, now))

    def unpriced(self, provider: str, model: str, now: datetime) -> None:
        key = unpriced_key(provider, model)
        if key not in self.sent:
            self.sent[key] = math.inf  # once ever
            self._push(unpriced_event(provider, model, now))

    def take(self) -> list[AlertEvent]:
        fresh, self.fresh = self.fresh, []
        return fresh

    def give_back(self, events: list[AlertEvent]) -> None:
        """Events the ledger could not store yet: first in line for the next try."""
        self.fresh[:0] = events

    def _push(self, event: AlertEvent) -> None:
        self.fresh.append(event)
        self.wake.set()

    def load(self, keys: Iterable[str], keep_s: float) -> None:
        """The dedupe keys the ledger holds (``ledger.alerts.recent_keys``), kept for
        ``keep_s`` (the longest window: no window they belong to is still current after
        it), except an unpriced model's, kept for good."""
        until = time.time() + keep_s
        for text in keys:
            key = key_of(text)
            self.sent[key] = math.inf if key[0] == UNPRICED else until

    def prune(self, now_s: float) -> None:
        """Forget the keys and marks of windows that ended: memory stays flat."""
        self.sent = {k: end for k, end in self.sent.items() if end > now_s}
        self._marks = {m: v for m, v in self._marks.items() if v[1] > now_s}
        self._prune_at = now_s + PRUNE_EVERY_S

    def _text_of(self, threshold: float) -> str:
        text = self._threshold_text.get(threshold)
        if text is None:
            text = self._threshold_text[threshold] = number(threshold)
        return text

    def _periods_in(self, tz: str) -> Periods:
        if self._periods.tz != tz:  # a reload changed [server] timezone
            self._periods = Periods(tz)
        return self._periods
