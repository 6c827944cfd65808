"""What the request path hands to the alerts: events made in memory, never awaited.

``Outbox`` is called from a request's ``finish()`` (budget thresholds, an unpriced
model) and, once the spike trigger lands, for each spike hit.  It keeps the dedupe keys
already made (``sent``: loaded from the ledger at start for the windows still current,
then grown by every event), so a request whose crossings were all sent costs a set
lookup per crossing and nothing else: no ledger query, no await.  A new event goes on
``fresh`` and wakes the delivery task (``daemon.alerts.delivery``), which stores it in
the ledger and posts it.

The set is this instance's memory only; across instances the ledger's key on the
event id is what keeps an event single (``ledger.alerts.store``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime

from waystone_cli.core.alerts import (
    AlertEvent,
    Charge,
    Key,
    Periods,
    SpikeHit,
    crossings,
    key_of,
    spike_event,
    spike_key,
    threshold_event,
    threshold_key,
    unpriced_event,
    unpriced_key,
)
from waystone_cli.core.decision import Limit, number


class Outbox:
    def __init__(self, tz: str = "UTC") -> None:
        self.sent: set[Key] = set()
        self.fresh: list[AlertEvent] = []
        self.wake = asyncio.Event()
        self._periods = Periods(tz)
        self._threshold_text: dict[float, str] = {}

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
        for crossing in crossings(limits, thresholds, charge):
            period = periods.period(crossing.limit.window, now, now_s)
            key = threshold_key(crossing, period.text, self._text_of(crossing.threshold))
            if key not in self.sent:
                self.sent.add(key)
                self._push(threshold_event(crossing, period.start, now))

    def spike(self, hit: SpikeHit, now: datetime, *, tz: str = "UTC") -> None:
        """One ``spike.detected`` per subject, rule and window."""
        start = self._periods_in(tz).start(hit.window, now)
        key = spike_key(hit, start)
        if key not in self.sent:
            self.sent.add(key)
            self._push(spike_event(hit, start, now))

    def unpriced(self, provider: str, model: str, now: datetime) -> None:
        key = unpriced_key(provider, model)
        if key not in self.sent:
            self.sent.add(key)
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

    def load(self, keys: Iterable[str]) -> None:
        """The dedupe keys the ledger holds (``ledger.alerts.recent_keys``)."""
        self.sent.update(key_of(text) for text in keys)

    def _text_of(self, threshold: float) -> str:
        text = self._threshold_text.get(threshold)
        if text is None:
            text = self._threshold_text[threshold] = number(threshold)
        return text

    def _periods_in(self, tz: str) -> Periods:
        if self._periods.tz != tz:  # a reload changed [server] timezone
            self._periods = Periods(tz)
        return self._periods
