"""The spike trigger: ``judge`` on hand-made numbers, and the trigger inside ``decide``."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from tests.unit.core.test_policy import ALICE, NOW, config, facts, spend
from waystone_cli.core.counters import Subject, UsageCounters
from waystone_cli.core.policy import decide
from waystone_cli.core.spike import SpikeHit, in_reach, judge, period_start

# --- judge -----------------------------------------------------------------------------


def test_judge_without_history_fires_only_by_min() -> None:
    assert judge(0.0, 0.0, 167, 10, 0) is None  # a first request: nothing used yet
    assert judge(1.0, 0.0, 167, 10, 0) == 0.0  # anything above no history, min 0
    assert judge(0.5, 0.0, 167, 10, 1.0) is None  # below min
    assert judge(1.0, 0.0, 167, 10, 1.0) == 0.0  # min reached


def test_judge_on_a_flat_baseline_fires_at_factor_times_the_average() -> None:
    # 30 over 3 windows: an average of 10, so factor 2 puts the bar at 20.
    assert judge(19.0, 30.0, 3, 2, 0) is None
    assert judge(20.0, 30.0, 3, 2, 0) == 10.0
    assert judge(20.0, 30.0, 3, 2, 25) is None  # min above the bar wins


def test_judge_reads_a_tiny_negative_baseline_as_none() -> None:
    # usage(baseline) - usage(window) in float can land just below zero.
    assert judge(1.0, -1e-12, 3, 2, 0) == 0.0


def test_judge_compares_whole_numbers_exactly() -> None:
    # 167 windows of 7 = 1169: bar 10 x 7 = 70 exactly, whatever 1169 / 167 rounds to.
    assert judge(69.0, 1169.0, 167, 10, 0) is None
    assert judge(70.0, 1169.0, 167, 10, 0) == 7.0


def test_period_start_counts_windows_from_the_epoch() -> None:
    at = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC).timestamp()
    assert period_start(at, 3600) == datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    assert period_start(at, 86400) == datetime(2026, 3, 15, tzinfo=UTC)


# --- the trigger in decide -------------------------------------------------------------

RUNAWAY = """
[rules.runaway]
spike = { metric = "requests", window = "1h", factor = 2, baseline = "4h" }
action = "flag"
[rulesets.watch]
when = "always"
rules = ["runaway"]
"""


def counters_with(prior: int, current: int) -> UsageCounters:
    """``prior`` requests in each of 08:30, 09:30 and 10:30, ``current`` at 11:30.

    At NOW (12:00:30) the 1h window starts at minute 11:00 and the 4h baseline at
    08:00, so the baseline before the window is [08:00, 11:00): three hours.
    """
    c = UsageCounters()
    for hour in (8, 9, 10):
        for _ in range(prior):
            spend(c, 0.0, when=NOW.replace(hour=hour, minute=30))
    for _ in range(current):
        spend(c, 0.0, when=NOW.replace(hour=11, minute=30))
    return c


def test_spike_below_the_bar_does_not_flag() -> None:
    # 2 a hour before: average 2, bar 4; 3 this hour.
    d = decide(config(RUNAWAY), facts(), counters_with(2, 3))
    assert (d.allowed, d.flagged, d.spikes, d.rules) == (True, False, (), ())


def test_spike_at_the_bar_flags_and_reports_the_hit() -> None:
    d = decide(config(RUNAWAY), facts(), counters_with(2, 4))
    assert (d.allowed, d.flagged, d.rules) == (True, True, ("watch/runaway",))
    assert d.spikes == (
        SpikeHit(
            subject=Subject("user", "alice"),
            ruleset="watch",
            rule="runaway",
            metric="requests",
            window="1h",
            window_start=datetime(2026, 3, 15, 12, 0, tzinfo=UTC),
            current=4.0,
            baseline=2.0,
            factor=2.0,
        ),
    )


def test_spike_block_is_a_429_until_the_window_empties() -> None:
    toml = RUNAWAY.replace('action = "flag"', 'action = "block"')
    d = decide(config(toml), facts(), counters_with(2, 4))
    assert (d.allowed, d.status, d.code, d.flagged) == (False, 429, "quota_exceeded", False)
    # The 4 requests of 11:30 leave the 1h window when minute 11:30 does: at 12:31.
    assert d.retry_after == (NOW.replace(minute=31, second=0) - NOW).total_seconds()


def test_explain_shows_a_spike_that_did_not_fire() -> None:
    d = decide(config(RUNAWAY), facts(), counters_with(2, 3), explain=True)
    assert [r.text for r in d.reasons if r.rule == "runaway"] == [
        'rule "runaway" of ruleset "watch" for user:alice: requests in the last 1h is 3, '
        "against 2x an average of 2 per 1h over the last 4h (min 0): not fired"
    ]


def test_a_spike_with_no_history_and_no_min_fires_from_the_second_request() -> None:
    c = UsageCounters()
    assert decide(config(RUNAWAY), facts(), c).flagged is False  # nothing used yet
    spend(c, 0.0, when=NOW - timedelta(minutes=1))
    d = decide(config(RUNAWAY), facts(), c)
    assert (d.flagged, d.spikes[0].current, d.spikes[0].baseline) == (True, 1.0, 0.0)


def test_a_hit_encodes_to_json_without_infinity() -> None:
    c = UsageCounters()
    spend(c, 0.0, when=NOW - timedelta(minutes=1))
    hit = decide(config(RUNAWAY), facts(ALICE), c).spikes[0]
    # allow_nan=False raises on an infinity: a hit must never carry one.
    json.dumps({**hit._asdict(), "window_start": hit.window_start.isoformat()}, allow_nan=False)


def test_out_of_reach_nothing_fires_whatever_the_baseline() -> None:
    # in_reach lets the daemon skip the baseline read: it must never skip a spike.
    cases = {(0.0, 0.0): False, (2.0, 3.0): False, (3.0, 3.0): True, (0.5, 0.0): True}
    for (current, minimum), reach in cases.items():
        assert in_reach(current, minimum) is reach
        assert (judge(current, 0.0, 3, 2, minimum) is not None) is reach  # no history


def test_a_cost_exactly_at_the_bar_fires_whatever_the_float_noise() -> None:
    # As the counters read USD: whole 1e-10 units over 1e10, the baseline a difference
    # of two such floats. current = 2 x the average of 3 windows is the bar, exactly.
    rng = random.Random(19)
    for _ in range(2_000):
        units = rng.randint(1, 10**8)
        current = 2 * units / 1e10
        total = (2 * units + 3 * units) / 1e10 - current
        assert judge(current, total, 3, 2, 0) is not None, units
        below = (2 * units - 1) / 1e10
        assert judge(below, (2 * units - 1 + 3 * units) / 1e10 - below, 3, 2, 0) is None, units


def test_a_spike_rule_two_rulesets_list_reports_one_hit() -> None:
    toml = RUNAWAY + '[rulesets.again]\nwhen = "tier = free"\nrules = ["runaway"]\n'
    d = decide(config(toml), facts(), counters_with(2, 4))
    assert (d.rules, len(d.spikes)) == (("watch/runaway", "again/runaway"), 1)
