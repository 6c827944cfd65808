"""Alert events, built from what a request already decided: pure, no I/O.

Three event types (SPEC §14), each a JSON object posted as is to ``[alerts] webhook``:

- ``budget.threshold``: a subject's usage reached a threshold fraction of a limit that
  applies to it (a ``usage`` rule, entity credits, a ``share``).  Read from
  ``Decision.limits`` (the usage each limit saw at admission, other requests'
  reservations included) plus this request's own recorded usage (``Charge``), once the
  request is settled: the recorded cost, not the estimate, so an estimate that overshoots
  (a large ``max_tokens``) does not fire early.  A refused request is charged nothing,
  so it fires only what its admission already saw (a limit that is reached: 100%).
  Every threshold at or below the fraction used is due, so a request that jumps from
  40% to 90% fires both 50% and 80%.  A limit of 0 never fires: it blocks everything.
- ``spike.detected``: the spike trigger fired (``spike_event``, from a hit carrying
  subject, ruleset, rule, metric, window, current, baseline and factor).
- ``model.unpriced``: the first request of a model without a price (``unpriced_event``).

Exactly once
------------
Each event has a dedupe key: type, subject, ruleset and rule, metric, window, threshold
and the start of the window it belongs to (a spike: no threshold; an unpriced model:
provider and model only, once ever).  Its ``id`` is a UUID5 of the key, so the same
crossing seen by two instances or after a restart has the same ``id``: the ledger keeps
one row per ``id`` and a receiver can drop a repeat.

Window starts (``Periods``): a calendar window (day, week, month) starts at its
boundary in the counters' time zone; a rolling window (``1h``, ``30d``) has no start of
its own, so its alerts are grouped in consecutive periods of its length counted from
the Unix epoch (a ``1h`` window re-arms at each whole hour of UTC).  That keeps the key a
function of the clock alone, the same on every instance.

The body is encoded once, when the event is made (``AlertEvent.body``); every delivery
attempt posts those same bytes, signed with ``signature``.  Numbers are finite: an
infinite ratio (a spike over a zero baseline) is sent as ``null``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from waystone_cli.core.counters import METRICS, Subject
from waystone_cli.core.decision import Limit, amount, number
from waystone_cli.core.windows import parse_window, window_end, window_start

THRESHOLD = "budget.threshold"
SPIKE = "spike.detected"
UNPRICED = "model.unpriced"
TEST = "waystone.test"
SIGNATURE_HEADER = "X-Waystone-Signature"
# Fixed forever: ids made by any version or instance agree.
_NAMESPACE = uuid.UUID("6f0f4c5e-2b7a-5a51-9d3e-7761e0a1e2d4")


@dataclass(frozen=True)
class AlertEvent:
    id: str
    type: str
    key: str  # the dedupe key the id is made from
    at: datetime  # aware UTC
    body: bytes  # the exact JSON posted (and signed)


class Charge(NamedTuple):
    """What one request added to the counters when it settled."""

    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def of(self, metric: str) -> float:
        if metric == "cost_usd":
            return self.cost_usd
        if metric == "tokens":
            return float(self.input_tokens + self.output_tokens)
        if metric == "requests":
            return float(self.requests)
        return float(getattr(self, metric))


NO_CHARGE = Charge()


class Crossing(NamedTuple):
    limit: Limit
    threshold: float
    used: float  # the usage once this request is counted


def reached(lim: Limit, thresholds: tuple[float, ...], charge: Charge) -> tuple[int, float]:
    """How many of ``thresholds`` (increasing) the usage has reached, this request's
    charge counted, and that usage; (0, 0.0) for a limit that never alerts.  A shortfall
    under ``_NOISE`` counts as reached: float sums (0.1 + 0.2) must not hide a crossing
    that is exact in the ledger's decimals."""
    limit = lim.limit
    if not limit > 0 or lim.metric not in _METRICS:
        return 0, 0.0
    used = lim.used + charge.of(lim.metric)
    count = 0
    for t in thresholds:
        if used + _NOISE < t * limit:
            break
        count += 1
    return count, (round(used, 10) if count else used)


# The ledger's cost precision (DECIMAL(18, 10)); token and request counts are whole.
_NOISE = 1e-10
_METRICS = frozenset(METRICS)


def crossings(
    limits: Iterable[Limit], thresholds: tuple[float, ...], charge: Charge
) -> Iterator[Crossing]:
    """Every (limit, threshold) the usage has reached, this request's charge counted."""
    for lim in limits:
        count, used = reached(lim, thresholds, charge)
        for t in thresholds[:count]:
            yield Crossing(lim, t, used)


class Period(NamedTuple):
    start: datetime
    text: str  # ``iso(start)``, as keys spell it
    start_s: float
    end_s: float


class Periods:
    """The start of the window (or period, for rolling windows) holding ``now``, kept
    until that window or period ends: a request looks it up, it does not recompute it.
    Owned by whoever holds the events' state (a reload with another time zone makes a
    new one)."""

    def __init__(self, tz: str = "UTC") -> None:
        self.tz = tz
        self._current: dict[str, Period] = {}

    def start(self, window: str, now: datetime) -> datetime:
        return self.period(window, now, now.timestamp()).start

    def period(self, window: str, now: datetime, now_s: float) -> Period:
        cached = self._current.get(window)
        if cached is not None and cached.start_s <= now_s < cached.end_s:
            return cached
        w = parse_window(window)
        if w.duration is not None:
            span = w.duration.total_seconds()
            start_s = now_s // span * span
            end_s = start_s + span
            start = datetime.fromtimestamp(start_s, UTC)
        else:
            start = window_start(w, now, self.tz)
            end = window_end(w, now, self.tz)
            assert end is not None  # a calendar window always ends
            start_s, end_s = start.timestamp(), end.timestamp()
        period = self._current[window] = Period(start, iso(start), start_s, end_s)
        return period


Key = tuple[str, ...]


def key_text(key: Key) -> str:
    """A dedupe key as the ledger stores it; ``key_of`` reads it back (no part holds a
    ``|``: ids, names, windows and times never do)."""
    return "|".join(key)


def key_of(text: str) -> Key:
    return tuple(text.split("|"))


def subject_of(text: str | Subject) -> dict[str, str | None]:
    """A limit's or hit's subject as ``{"kind", "id"}``.  A user's share of a group is
    kind ``member``, id ``GROUP/USER`` (ids never hold a ``/`` or a space)."""
    if isinstance(text, Subject):
        return {"kind": text.kind, "id": text.id or None}
    if text == "request":
        return {"kind": "request", "id": None}
    if " in " in text:
        user, _, group = text.partition(" in ")
        return {"kind": "member", "id": f"{group.partition(':')[2]}/{user.partition(':')[2]}"}
    kind, _, ident = text.partition(":")
    return {"kind": kind, "id": ident}


def threshold_key(crossing: Crossing, start_text: str, threshold_text: str | None = None) -> Key:
    lim = crossing.limit
    t = threshold_text if threshold_text is not None else number(crossing.threshold)
    return (
        THRESHOLD,
        lim.subject,
        lim.ruleset or "",
        lim.rule,
        lim.metric,
        lim.window,
        t,
        start_text,
    )


def threshold_event(crossing: Crossing, start: datetime, now: datetime) -> AlertEvent:
    lim, t = crossing.limit, crossing.threshold
    key = threshold_key(crossing, iso(start))
    subject = subject_of(lim.subject)
    what = "credits" if lim.ruleset is None else f"rule {lim.rule} (ruleset {lim.ruleset})"
    text = (
        f"{_who(subject)} reached {number(round(t * 100, 6))}% of {what}: "
        f"{amount(lim.metric, crossing.used)} of {amount(lim.metric, lim.limit)} "
        f"{lim.metric} in the {lim.window} window from {iso(start)}"
    )
    fields = {
        "subject": subject,
        "ruleset": lim.ruleset,
        "rule": lim.rule,
        "metric": lim.metric,
        "window": lim.window,
        "window_start": iso(start),
        "threshold": t,
        "limit": lim.limit,
        "used": crossing.used,
        "text": text,
    }
    return make_event(THRESHOLD, key, now, fields)


class SpikeHit(Protocol):
    """What the spike trigger reports for one subject and rule (``Decision.spikes``)."""

    @property
    def subject(self) -> Subject | str: ...
    @property
    def ruleset(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def window(self) -> str: ...
    @property
    def current(self) -> float: ...
    @property
    def baseline(self) -> float: ...
    @property
    def factor(self) -> float: ...


def spike_key(hit: SpikeHit, start: datetime) -> Key:
    subject = str(hit.subject)
    return (SPIKE, subject, hit.ruleset, hit.rule, hit.metric, hit.window, iso(start))


def spike_event(hit: SpikeHit, start: datetime, now: datetime) -> AlertEvent:
    """Once per subject, rule and window: the window the spike was seen in."""
    subject = subject_of(hit.subject)
    if hit.baseline > 0 and math.isfinite(hit.current / hit.baseline):
        ratio = number(round(hit.current / hit.baseline, 2))
        against = f"{ratio}x its baseline of {amount(hit.metric, hit.baseline)}"
    else:
        against = "with no baseline"
    text = (
        f"{_who(subject)} spiked on rule {hit.rule} (ruleset {hit.ruleset}): "
        f"{amount(hit.metric, hit.current)} {hit.metric} in the {hit.window} window, {against}"
    )
    fields = {
        "subject": subject,
        "ruleset": hit.ruleset,
        "rule": hit.rule,
        "metric": hit.metric,
        "window": hit.window,
        "window_start": iso(start),
        "current": finite(hit.current),
        "baseline": finite(hit.baseline),
        "factor": finite(hit.factor),
        "text": text,
    }
    return make_event(SPIKE, spike_key(hit, start), now, fields)


def unpriced_key(provider: str, model: str) -> Key:
    return (UNPRICED, f"{provider}/{model}")


def unpriced_event(provider: str, model: str, now: datetime) -> AlertEvent:
    """Once per model, ever: the first request with usage and no known price."""
    text = (
        f"model {provider}/{model} has no known price: its requests are recorded as"
        f' unpriced (add [prices."{provider}/{model}"])'
    )
    fields = {"provider": provider, "model": model, "text": text}
    return make_event(UNPRICED, unpriced_key(provider, model), now, fields)


def probe_event(ident: str, now: datetime) -> AlertEvent:
    """``waystone alerts test``: never stored, so its id is the caller's (random)."""
    fields = {"text": "waystone test event: the webhook is reachable and signatures verify"}
    return make_event(TEST, (TEST, ident), now, fields, ident=ident)


def make_event(
    kind: str, key: Key, now: datetime, fields: Mapping[str, Any], ident: str | None = None
) -> AlertEvent:
    text = key_text(key)
    ident = ident or event_id(text)
    payload = {"id": ident, "type": kind, "at": iso(now), **fields}
    return AlertEvent(id=ident, type=kind, key=text, at=now, body=encode(payload))


def event_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON; a NaN or infinity is a bug here (``finite`` first), never sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def signature(secret: str, body: bytes) -> str:
    """``X-Waystone-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _who(subject: Mapping[str, str | None]) -> str:
    if subject["kind"] == "request":
        return "anonymous traffic"
    if subject["kind"] == "member":
        group, _, user = (subject["id"] or "").partition("/")
        return f"user {user} in group {group}"
    return f"{subject['kind']} {subject['id']}"
