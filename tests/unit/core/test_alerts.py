"""Alert events from decisions: which thresholds are due, their keys, ids and bodies."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, datetime

from waystone_cli.core.alerts import (
    Charge,
    Crossing,
    Periods,
    crossings,
    event_id,
    key_of,
    key_text,
    probe_event,
    signature,
    spike_event,
    subject_of,
    threshold_event,
    threshold_key,
    unpriced_event,
)
from waystone_cli.core.counters import Subject
from waystone_cli.core.decision import Limit
from waystone_cli.core.spike import SpikeHit

NOW = datetime(2026, 12, 2, 15, 40, 7, tzinfo=UTC)
THRESHOLDS = (0.5, 0.8, 1.0)


def _limit(used: float, limit: float = 10.0, metric: str = "cost_usd", **kw: str) -> Limit:
    fields = {"ruleset": "teams", "rule": "monthly", "subject": "user:alice", "window": "month"}
    fields.update(kw)
    return Limit(
        ruleset=fields["ruleset"],
        rule=fields["rule"],
        subject=fields["subject"],
        metric=metric,
        window=fields["window"],
        used=used,
        limit=limit,
    )


def _due(limits: list[Limit], charge: Charge = Charge()) -> list[tuple[float, float]]:
    return [(c.threshold, c.used) for c in crossings(limits, THRESHOLDS, charge)]


def test_below_every_threshold_nothing_is_due() -> None:
    assert _due([_limit(4.0)], Charge(cost_usd=0.99)) == []


def test_the_requests_own_cost_makes_the_crossing() -> None:
    assert _due([_limit(4.0)], Charge(cost_usd=1.0)) == [(0.5, 5.0)]


def test_a_jump_past_several_thresholds_makes_each_of_them_due() -> None:
    assert _due([_limit(4.0)], Charge(cost_usd=6.5)) == [(0.5, 10.5), (0.8, 10.5), (1.0, 10.5)]


def test_a_refused_request_charged_nothing_still_reports_the_reached_limit() -> None:
    assert _due([_limit(10.0)]) == [(0.5, 10.0), (0.8, 10.0), (1.0, 10.0)]


def test_float_noise_does_not_hide_an_exact_crossing() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 and 0.8 * 0.375 is 0.30000000000000004 too,
    # but 0.3 of 0.375 must count as exactly 80%.
    assert _due([_limit(0.1, limit=0.375)], Charge(cost_usd=0.2)) == [(0.5, 0.3), (0.8, 0.3)]


def test_each_metric_counts_its_own_part_of_the_charge() -> None:
    charge = Charge(cost_usd=0.0, input_tokens=30, output_tokens=20, requests=1)
    limits = [
        _limit(0.0, limit=100, metric="tokens"),
        _limit(0.0, limit=60, metric="input_tokens"),
        _limit(0.0, limit=40, metric="output_tokens"),
        _limit(0.0, limit=2, metric="requests"),
    ]
    found = [(c.limit.metric, c.threshold) for c in crossings(limits, THRESHOLDS, charge)]
    assert found == [
        ("tokens", 0.5),
        ("input_tokens", 0.5),
        ("output_tokens", 0.5),
        ("requests", 0.5),
    ]


def test_rate_limits_and_zero_limits_never_fire() -> None:
    limits = [_limit(100, limit=10, metric="rpm", window="60s"), _limit(0.0, limit=0.0)]
    assert _due(limits, Charge(cost_usd=1.0)) == []


def test_calendar_window_starts_at_its_boundary_in_the_time_zone() -> None:
    periods = Periods("Europe/Paris")
    assert periods.start("month", NOW) == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert periods.start("day", NOW) == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    later = datetime(2027, 1, 1, 0, 0, tzinfo=UTC)  # 01:00 in Paris: January already
    assert periods.start("month", later) == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)


def test_rolling_window_periods_are_counted_from_the_epoch() -> None:
    periods = Periods()
    assert periods.start("1h", NOW) == datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert periods.start("7d", NOW) == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # a Thursday


def test_subjects_as_kind_and_id() -> None:
    assert subject_of("user:alice") == {"kind": "user", "id": "alice"}
    assert subject_of("group:acme:eu") == {"kind": "group", "id": "acme:eu"}
    assert subject_of("user:alice in group:acme") == {"kind": "member", "id": "acme/alice"}
    assert subject_of("request") == {"kind": "request", "id": None}
    assert subject_of(Subject("user", "bob")) == {"kind": "user", "id": "bob"}


def test_threshold_event_has_the_spec_shape_and_a_deterministic_id() -> None:
    crossing = Crossing(_limit(7.0), 0.8, 8.25)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    event = threshold_event(crossing, start, NOW)
    key = "budget.threshold|user:alice|teams|monthly|cost_usd|month|0.8|2026-12-01T00:00:00Z"
    assert key_text(threshold_key(crossing, "2026-12-01T00:00:00Z")) == key
    assert key_of(key) == threshold_key(crossing, "2026-12-01T00:00:00Z")
    assert event.id == event_id(key) == threshold_event(crossing, start, NOW.replace(hour=1)).id
    assert json.loads(event.body) == {
        "id": event.id,
        "type": "budget.threshold",
        "at": "2026-12-02T15:40:07Z",
        "subject": {"kind": "user", "id": "alice"},
        "ruleset": "teams",
        "rule": "monthly",
        "metric": "cost_usd",
        "window": "month",
        "window_start": "2026-12-01T00:00:00Z",
        "threshold": 0.8,
        "limit": 10.0,
        "used": 8.25,
        "text": "user alice reached 80% of rule monthly (ruleset teams): $8.25 of $10"
        " cost_usd in the month window from 2026-12-01T00:00:00Z",
    }


def test_credits_threshold_names_no_ruleset_and_another_window_another_id() -> None:
    crossing = Crossing(_limit(5.0, ruleset=None, rule="credits"), 0.5, 5.0)  # type: ignore[arg-type]
    december = threshold_event(crossing, datetime(2026, 12, 1, tzinfo=UTC), NOW)
    january = threshold_event(crossing, datetime(2027, 1, 1, tzinfo=UTC), NOW)
    body = json.loads(december.body)
    assert (body["ruleset"], body["rule"]) == (None, "credits")
    assert body["text"].startswith("user alice reached 50% of credits: $5 of $10")
    assert december.id != january.id


def _hit(subject: Subject, metric: str, current: float, baseline: float, factor: float) -> SpikeHit:
    start = datetime(2026, 12, 2, 15, tzinfo=UTC)
    return SpikeHit(subject, "abuse", "runaway", metric, "1h", start, current, baseline, factor)


def test_spike_event_over_a_zero_baseline_sends_no_infinity() -> None:
    hit = _hit(Subject("user", "mallory"), "cost_usd", 3.5, 0.0, math.inf)
    event = spike_event(hit, datetime(2026, 12, 2, 15, tzinfo=UTC), NOW)
    body = json.loads(event.body)  # strict JSON: no Infinity token
    assert body == {
        "id": event_id(
            "spike.detected|user:mallory|abuse|runaway|cost_usd|1h|2026-12-02T15:00:00Z"
        ),
        "type": "spike.detected",
        "at": "2026-12-02T15:40:07Z",
        "subject": {"kind": "user", "id": "mallory"},
        "ruleset": "abuse",
        "rule": "runaway",
        "metric": "cost_usd",
        "window": "1h",
        "window_start": "2026-12-02T15:00:00Z",
        "current": 3.5,
        "baseline": 0.0,
        "factor": None,
        "text": "user mallory spiked on rule runaway (ruleset abuse): $3.5 cost_usd in the 1h"
        " window, with no baseline",
    }


def test_spike_ratio_is_written_when_there_is_a_baseline() -> None:
    hit = _hit(Subject("group", "acme"), "requests", 50, 4, 10)
    body = json.loads(spike_event(hit, NOW, NOW).body)
    assert body["factor"] == 10
    assert "50 requests in the 1h window, 12.5x its baseline of 4" in body["text"]


def test_unpriced_event_is_once_per_model() -> None:
    first = unpriced_event("up", "new-model", NOW)
    again = unpriced_event("up", "new-model", NOW.replace(day=3))
    assert first.id == again.id != unpriced_event("up", "other", NOW).id
    assert json.loads(first.body)["text"] == (
        "model up/new-model has no known price: its requests are recorded as unpriced"
        ' (add [prices."up/new-model"])'
    )


def test_signature_is_the_hmac_of_the_exact_body() -> None:
    event = probe_event("b5d0e7a2-0000-4000-8000-000000000000", NOW)
    expected = hmac.new(b"k3y", event.body, hashlib.sha256).hexdigest()
    assert signature("k3y", event.body) == f"sha256={expected}"
    assert json.loads(event.body)["id"] == "b5d0e7a2-0000-4000-8000-000000000000"
