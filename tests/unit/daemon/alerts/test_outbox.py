"""The outbox: each dedupe key makes one event, whatever the request path hands it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from daemon.alerts.outbox import Outbox
from waystone_cli.core.alerts import Charge
from waystone_cli.core.counters import Subject
from waystone_cli.core.decision import Limit
from waystone_cli.core.spike import SpikeHit

NOW = datetime(2026, 12, 2, 15, 40, tzinfo=UTC)


def _limit(used: float) -> Limit:
    return Limit(
        ruleset="teams",
        rule="daily",
        subject="user:alice",
        metric="cost_usd",
        window="day",
        used=used,
        limit=1.0,
    )


def test_a_crossing_seen_again_makes_no_second_event() -> None:
    outbox = Outbox()
    outbox.thresholds([_limit(0.4)], (0.5, 0.8), Charge(cost_usd=0.2), tz="UTC", now=NOW)
    outbox.thresholds([_limit(0.6)], (0.5, 0.8), Charge(cost_usd=0.1), tz="UTC", now=NOW)
    assert [json.loads(e.body)["threshold"] for e in outbox.take()] == [0.5]
    assert outbox.wake.is_set()
    outbox.thresholds([_limit(0.7)], (0.5, 0.8), Charge(cost_usd=0.1), tz="UTC", now=NOW)
    assert [json.loads(e.body)["threshold"] for e in outbox.take()] == [0.8]


def test_the_next_day_is_a_new_window() -> None:
    outbox = Outbox()
    outbox.thresholds([_limit(0.6)], (0.5,), Charge(), tz="UTC", now=NOW)
    outbox.thresholds([_limit(0.6)], (0.5,), Charge(), tz="UTC", now=NOW.replace(day=3))
    starts = [json.loads(e.body)["window_start"] for e in outbox.take()]
    assert starts == ["2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"]


def test_a_spike_is_sent_once_per_subject_rule_and_window() -> None:
    outbox = Outbox()
    start = datetime(2026, 12, 2, 15, tzinfo=UTC)
    hit = SpikeHit(
        Subject("user", "mallory"), "abuse", "runaway", "cost_usd", "1h", start, 4.0, 0.0, math.inf
    )
    outbox.spike(hit, NOW)
    outbox.spike(hit, NOW.replace(minute=59))  # the same hour
    outbox.spike(hit._replace(subject=Subject("user", "eve")), NOW)
    outbox.spike(hit, NOW.replace(hour=16))  # the next hour
    events = [json.loads(e.body) for e in outbox.take()]
    assert [(e["subject"]["id"], e["window_start"], e["factor"]) for e in events] == [
        ("mallory", "2026-12-02T15:00:00Z", None),
        ("eve", "2026-12-02T15:00:00Z", None),
        ("mallory", "2026-12-02T16:00:00Z", None),
    ]


def test_an_unpriced_model_is_sent_once_and_keys_loaded_at_start_are_not_sent() -> None:
    outbox = Outbox()
    outbox.load(["model.unpriced|up/old-model"], keep_s=86400)
    for model in ("old-model", "new-model", "new-model"):
        outbox.unpriced("up", model, NOW)
    assert [json.loads(e.body)["model"] for e in outbox.take()] == ["new-model"]


def test_events_the_ledger_refused_go_back_first_in_line() -> None:
    outbox = Outbox()
    outbox.unpriced("up", "a", NOW)
    taken = outbox.take()
    outbox.unpriced("up", "b", NOW)
    outbox.give_back(taken)
    assert [json.loads(e.body)["model"] for e in outbox.take()] == ["a", "b"]


def test_keys_of_ended_windows_are_forgotten_and_unpriced_models_are_not() -> None:
    outbox = Outbox()
    outbox.thresholds([_limit(0.6)], (0.5,), Charge(), tz="UTC", now=NOW)
    outbox.unpriced("up", "m", NOW)
    outbox.take()
    next_day = NOW.replace(day=3)
    outbox.prune(next_day.timestamp())
    assert list(outbox.sent) == [("model.unpriced", "up/m")]
    # Today's crossing is not made again while its window lasts: the mark remembers it.
    outbox.thresholds([_limit(0.9)], (0.5,), Charge(), tz="UTC", now=next_day)
    outbox.thresholds([_limit(0.9)], (0.5,), Charge(), tz="UTC", now=next_day)
    assert [json.loads(e.body)["window_start"] for e in outbox.take()] == ["2026-12-03T00:00:00Z"]
