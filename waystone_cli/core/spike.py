"""The ``spike`` trigger's one definition, used by the daemon and by ``usage spikes``.

``spike = {metric, window, factor, baseline, min}`` fires when the subject's usage in
the current ``window`` has reached ``factor`` x its average per window over
``baseline``, and at least ``min`` (SPEC §14).  The decisions behind it:

- **The current window is left out of the baseline.**  ``baseline = "7d"`` with
  ``window = "1h"`` averages the 167 hours of the last 7 days before the current hour,
  so a spike never raises its own bar.  Both are read from the counters the daemon
  keeps anyway: ``current = usage(window)`` and ``baseline_total = usage(baseline) -
  current`` (two reads, no ledger query), over ``baseline / window - 1`` windows.
- **Usage before this request**, like every other trigger: the request that makes the
  usage reach the bar goes through as it is; the next one is the first the trigger sees.
- **"Reached" is ``>=``**, as for ``usage``: ``current >= factor x average``, compared as
  ``current x windows >= factor x baseline_total`` so that whole numbers stay exact, and
  USD amounts (floats of whole 1e-10 units) equal to 12 significant digits count as
  equal, so float noise never moves the firing point.
- **No history** (average 0): any usage is infinitely above it, so only ``min`` guards a
  newcomer; the trigger needs ``current > 0`` too, so a subject's first request (current
  0) never fires even with ``min = 0``.  No ratio is ever computed, so nothing can hold
  an infinity to JSON-encode.
- **Rolling windows only**, ``baseline`` longer than ``window`` and ``factor > 1``: a
  factor of 1 or less would call ordinary use a spike.
- **Identity of a spike** (``SpikeHit.window_start``): the start of the ``window``-long
  period, counted from the Unix epoch, that holds the request.  Alerts send one
  ``spike.detected`` per subject, rule and ``window_start``; ``usage spikes`` lists one
  line per the same key.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, NamedTuple

from waystone_cli.core.config import SpikeTrigger
from waystone_cli.core.counters import Subject, UsageView
from waystone_cli.core.decision import amount


class SpikeHit(NamedTuple):
    """A spike the trigger saw, for ``Decision.spikes`` (alerts read it)."""

    subject: Subject
    ruleset: str
    rule: str
    metric: str  # a usage metric
    window: str  # the trigger's window, "1h"
    window_start: datetime  # aware UTC: which period of ``window`` (see module docstring)
    current: float  # the usage in the window, before this request
    baseline: float  # the average per window over the baseline (0: no history)
    factor: float  # the trigger's factor


def judge(
    current: float,
    baseline_total: float,
    baseline_windows: float,
    factor: float,
    minimum: float,
) -> float | None:
    """The baseline average per window when ``current`` is a spike against it, else None.

    ``baseline_total`` is the usage over the baseline with the current window left
    out, ``baseline_windows`` how many windows that covers (``baseline / window - 1``).
    """
    if not in_reach(current, minimum):
        return None
    total = max(baseline_total, 0.0)  # counters in float may leave a tiny negative
    reached, bar = current * baseline_windows, factor * total
    # USD comes from the counters as units of 1e-10 over 1e10, and the baseline as a
    # difference of two such floats: at the bar itself, float noise must not decide.
    if reached < bar and not math.isclose(reached, bar, rel_tol=1e-12):
        return None
    return total / baseline_windows


def in_reach(current: float, minimum: float) -> bool:
    """``judge``'s first test, which needs no baseline: some usage, and at least ``min``.
    Most subjects stay below ``min``, so the daemon reads the baseline only past it."""
    return current > 0 and current >= minimum


class Reading(NamedTuple):
    """The trigger's two counter reads for one subject, and ``judge``'s verdict."""

    current: float  # usage in the window
    total: float  # usage in the baseline before the window (0 when not read)
    average: float | None  # the baseline average when it is a spike, else None


def read(
    counters: UsageView, subject: Subject, sp: SpikeTrigger, now: datetime, explain: bool = False
) -> Reading:
    """What the daemon's trigger sees: two values the counters keep, then ``judge``; the
    baseline is not read when the window is out of reach (unless explaining)."""
    current = counters.usage(subject, sp.metric, sp.window, now)
    if not explain and not in_reach(current, sp.min):
        return Reading(current, 0.0, None)
    total = counters.usage(subject, sp.metric, sp.baseline, now) - current
    return Reading(current, total, judge(current, total, sp.windows, sp.factor, sp.min))


def describe(sp: SpikeTrigger, r: Reading) -> str:
    """The reading in words, for the decision's reasons (``rules explain``)."""
    average = r.average if r.average is not None else max(r.total, 0.0) / sp.windows
    return (
        f"{sp.metric} in the last {sp.window} is {amount(sp.metric, r.current)}, against "
        f"{sp.factor:g}x an average of {amount(sp.metric, average)} per {sp.window} over "
        f"the last {sp.baseline} (min {amount(sp.metric, sp.min)})"
    )


def hit(
    subject: Subject, ruleset: str, rule: str, sp: SpikeTrigger, r: Reading, now: datetime
) -> SpikeHit:
    assert r.average is not None
    return SpikeHit(
        subject=subject,
        ruleset=ruleset,
        rule=rule,
        metric=sp.metric,
        window=sp.window,
        window_start=period_start(now.timestamp(), sp.window_s),
        current=r.current,
        baseline=r.average,
        factor=sp.factor,
    )


def retry_after(counters: UsageView, h: SpikeHit, sp: SpikeTrigger, now: datetime) -> float:
    """A blocking spike's Retry-After.  Refused requests are not charged, so the
    window's usage leaves within it: the wait until it falls below the bar is at most
    the window (the baseline only grows meanwhile)."""
    bar = max(sp.factor * h.baseline, sp.min)
    retry = counters.relief(h.subject, sp.metric, sp.window, bar, now) if bar > 0 else None
    return retry or sp.window_s


def period_start(now_s: float, window_s: float) -> datetime:
    """The start of the ``window_s``-long period (from the epoch) holding ``now_s``."""
    return datetime.fromtimestamp(now_s - now_s % window_s, UTC)


def hit_json(hit: SpikeHit) -> dict[str, Any]:
    """A hit as JSON-able data (``rules explain --json``, alerts' ``spike.detected``)."""
    return {
        "subject": {"kind": hit.subject.kind, "id": hit.subject.id or None},
        "ruleset": hit.ruleset,
        "rule": hit.rule,
        "metric": hit.metric,
        "window": hit.window,
        "window_start": hit.window_start.isoformat(),
        "current": hit.current,
        "baseline": hit.baseline,
        "factor": hit.factor,
    }
