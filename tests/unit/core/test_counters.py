"""Usage counters: window sums, reservations, rate windows, rebuild from the ledger, and
the overshoot bound under concurrency."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from waystone_cli.core.config import parse_config, parse_toml
from waystone_cli.core.counters import ANONYMOUS, Subject, UsageCounters
from waystone_cli.core.entities import Entity
from waystone_cli.core.policy import RequestFacts, decide
from waystone_cli.core.ratelimit import RateState
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.counters import counter_rows, counters_since

ALICE = Subject("user", "alice")
ACME = Subject("group", "acme")
NOW = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    """A time before NOW."""
    return NOW - timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def charge(
    c: UsageCounters,
    when: datetime,
    cost: float,
    tin: int = 10,
    tout: int = 20,
    user: str | None = "alice",
    group: str | None = None,
) -> None:
    subjects = [
        s
        for s in (
            Subject("user", user) if user else None,
            Subject("group", group) if group else None,
        )
        if s
    ] or [ANONYMOUS]
    r = c.reserve(subjects, user_id=user, group_id=group, tokens=100, cost_usd=1.0, now=when)
    c.settle(r, tokens_in=tin, tokens_out=tout, cost_usd=cost, now=when)


def history() -> UsageCounters:
    c = UsageCounters()
    charge(c, at(minutes=10), 0.25)  # this hour, today, this month
    charge(c, at(hours=5), 0.5)  # today (12:00 - 5h = 07:00)
    charge(c, at(hours=13), 1.0)  # yesterday 23:00: in 24h, not today
    charge(c, at(days=10), 2.0)  # March 5: this month, in 30d
    charge(c, at(days=20), 4.0)  # Feb 23: last month, in 30d
    charge(c, at(days=31), 8.0)  # Feb 12: outside every window
    return c


@pytest.mark.parametrize(
    ("metric", "window", "expected"),
    [
        ("cost_usd", "1h", 0.25),
        ("cost_usd", "day", 0.75),
        ("cost_usd", "24h", 1.75),
        ("cost_usd", "week", 1.75),  # the week started Monday March 9
        ("cost_usd", "month", 3.75),
        ("cost_usd", "30d", 7.75),
        ("requests", "30d", 5),
        ("tokens", "day", 60),
        ("input_tokens", "day", 20),
        ("output_tokens", "month", 80),
    ],
)
def test_usage_sums_each_window(metric: str, window: str, expected: float) -> None:
    assert history().usage(ALICE, metric, window, NOW) == expected


def test_calendar_day_follows_the_configured_time_zone() -> None:
    c = UsageCounters(tz="Asia/Kolkata")  # the local day starts at 18:30 UTC
    charge(c, datetime(2026, 3, 14, 18, 29, tzinfo=UTC), 1.0)
    charge(c, datetime(2026, 3, 14, 18, 30, tzinfo=UTC), 2.0)
    assert c.usage(ALICE, "cost_usd", "day", NOW) == 2.0


def test_costs_sum_exactly() -> None:
    c = UsageCounters()
    for _ in range(10):
        charge(c, at(minutes=1), 0.1)
    assert c.usage(ALICE, "cost_usd", "day", NOW) == 1.0


def test_cached_totals_match_a_fresh_sum_as_time_moves() -> None:
    rng = random.Random(7)
    c = UsageCounters()
    events: list[tuple[datetime, int]] = []
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start
    for _ in range(600):
        now += timedelta(minutes=rng.choice([0, 1, 7, 90, 600]), seconds=rng.randint(0, 59))
        when = now - timedelta(minutes=rng.choice([0, 0, 0, 3, 120]))  # some settle late
        tokens = rng.randint(1, 100)
        r = c.reserve([ALICE], user_id="alice", group_id=None, tokens=0, cost_usd=0, now=when)
        c.settle(r, tokens_in=tokens, tokens_out=0, cost_usd=0, now=now)
        events.append((when, tokens))
        for window, span in (("1h", timedelta(hours=1)), ("7d", timedelta(days=7))):
            first = int((now - span).timestamp() // 60)
            expected = sum(t for w, t in events if int(w.timestamp() // 60) >= first)
            assert c.usage(ALICE, "input_tokens", window, now) == expected, (window, now)
        day = now.replace(hour=0, minute=0, second=0)
        assert c.usage(ALICE, "input_tokens", "day", now) == sum(t for w, t in events if w >= day)


def test_reads_at_one_moment_see_charges_made_between_them_and_earlier_moments_after() -> None:
    c = history()
    reads = [c.usage(ALICE, "cost_usd", "1h", NOW)]
    charge(c, at(minutes=1), 0.125)
    reads.append(c.usage(ALICE, "cost_usd", "1h", NOW))  # the same moment, one charge more
    reads.append(c.usage(ALICE, "cost_usd", "1h", NOW + timedelta(minutes=55)))
    reads.append(c.usage(ALICE, "cost_usd", "1h", NOW - timedelta(minutes=5)))
    # charged at -10 min and -1 min: 55 min later only the second is in the last hour;
    # going back 5 min the window reaches the first again (and counts the later one).
    assert reads == [0.25, 0.375, 0.125, 0.375]


def test_reservations_count_until_settled_then_the_actual_usage_replaces_them() -> None:
    c = UsageCounters()
    r = c.reserve(
        [ALICE, ACME], user_id="alice", group_id="acme", tokens=500, cost_usd=0.2, now=NOW
    )
    seen = [
        c.usage(s, m, "day", NOW) for s in (ALICE, ACME) for m in ("cost_usd", "tokens", "requests")
    ]
    assert seen == [0.2, 500, 1, 0.2, 500, 1]
    assert c.member_usage("alice", "acme", "cost_usd", "day", NOW) == 0.2
    c.settle(r, tokens_in=30, tokens_out=40, cost_usd=0.05, now=NOW)
    c.settle(r, tokens_in=30, tokens_out=40, cost_usd=0.05, now=NOW)  # a second settle: no-op
    seen = [
        c.usage(s, m, "day", NOW) for s in (ALICE, ACME) for m in ("cost_usd", "tokens", "requests")
    ]
    assert seen == [0.05, 70, 1, 0.05, 70, 1]
    assert c.member_usage("alice", "acme", "tokens", "day", NOW) == 70
    assert c.member_usage("bob", "acme", "tokens", "day", NOW) == 0
    assert c.live == 0


def test_an_unpriced_request_charges_no_cost() -> None:
    c = UsageCounters()
    r = c.reserve([ALICE], user_id="alice", group_id=None, tokens=10, cost_usd=None, now=NOW)
    c.settle(r, tokens_in=5, tokens_out=5, cost_usd=None, now=NOW)
    assert (c.usage(ALICE, "cost_usd", "day", NOW), c.usage(ALICE, "tokens", "day", NOW)) == (
        0.0,
        10,
    )


def test_release_and_expire_drop_reservations_without_charging() -> None:
    c = UsageCounters()
    old = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=10, cost_usd=1, now=at(minutes=20)
    )
    fresh = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=10, cost_usd=2, now=at(minutes=5)
    )
    released = c.reserve([ALICE], user_id="alice", group_id=None, tokens=10, cost_usd=4, now=NOW)
    c.release(released)
    assert c.expire(NOW, max_age_s=900) == 1
    assert (c.usage(ALICE, "cost_usd", "day", NOW), c.live) == (2.0, 1)
    c.settle(old, tokens_in=1, tokens_out=1, cost_usd=1, now=NOW)  # too late: already expired
    c.settle(fresh, tokens_in=1, tokens_out=1, cost_usd=0.5, now=NOW)
    assert (c.usage(ALICE, "cost_usd", "day", NOW), c.live) == (0.5, 0)


def test_expire_prunes_buckets_older_than_keep_and_forgets_idle_subjects() -> None:
    c = UsageCounters(keep=timedelta(days=40))
    charge(c, at(days=41), 1.0, user="bob")
    charge(c, at(days=39), 2.0)
    assert c.usage(ALICE, "cost_usd", "60d", NOW) == 2.0
    assert c.usage(Subject("user", "bob"), "cost_usd", "60d", NOW) == 1.0
    c.expire(NOW)
    assert c.usage(ALICE, "cost_usd", "60d", NOW) == 2.0
    assert c.usage(Subject("user", "bob"), "cost_usd", "60d", NOW) == 0.0


def test_rate_counts_the_last_60_seconds_and_settled_tokens() -> None:
    c = UsageCounters()
    c.reserve([ALICE], user_id="alice", group_id=None, tokens=100, cost_usd=0, now=at(seconds=61))
    r1 = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=100, cost_usd=0, now=at(seconds=50)
    )
    c.reserve([ALICE], user_id="alice", group_id=None, tokens=300, cost_usd=0, now=at(seconds=10))
    c.settle(r1, tokens_in=20, tokens_out=5, cost_usd=0, now=at(seconds=5))
    state = c.rate(ALICE, NOW)
    assert state == RateState(
        requests=2, tokens=325, concurrent=2, reset_at=at(seconds=50).timestamp() + 60
    )
    assert c.rate(ACME, NOW) == RateState(0, 0, 0, None)


def test_without_a_rate_rule_no_rate_window_is_kept_and_the_rest_counts_the_same() -> None:
    c = UsageCounters()
    r = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=100, cost_usd=1, now=NOW, rate=False
    )
    assert c.rate(ALICE, NOW) == RateState(0, 0, 1, None)  # in flight all the same
    assert c.usage(ALICE, "requests", "day", NOW) == 1  # the reservation counts
    c.settle(r, tokens_in=20, tokens_out=5, cost_usd=0.5, now=NOW)
    assert c.rate(ALICE, NOW) == RateState(0, 0, 0, None)
    assert (c.usage(ALICE, "tokens", "day", NOW), c.usage(ALICE, "cost_usd", "day", NOW)) == (
        25,
        0.5,
    )


def test_relief_is_when_enough_old_usage_leaves_a_rolling_window() -> None:
    c = UsageCounters()
    charge(c, at(hours=20, seconds=30), 3.0)  # minute 16:00 of the day before
    charge(c, at(hours=2, seconds=30), 2.0)  # minute 10:00
    # 5 >= 4: the 3.0 leaves the 24h window when 16:01 yesterday is 24 h ago.
    assert c.relief(ALICE, "cost_usd", "24h", 4.0, NOW) == 4 * 3600 + 60 - 30
    assert c.relief(ALICE, "cost_usd", "24h", 1.0, NOW) == 22 * 3600 + 60 - 30
    assert c.relief(ALICE, "cost_usd", "day", 1.0, NOW) == 11 * 3600 + 59 * 60 + 30


def test_load_rebuilds_the_counters_from_ledger_rows(waystone_home: Path) -> None:
    con = open_readwrite(waystone_home / "ledger.duckdb")
    rows = [
        # id, ts, user, group, outcome, in, out, cost
        ("r1", "2026-03-15 11:50:10", "alice", "acme", "ok", 100, 50, "0.0012345678"),
        ("r2", "2026-03-15 11:50:50", "alice", "acme", "upstream_error", 0, 0, None),
        ("r3", "2026-03-15 09:00:00", "alice", None, "ok", 10, 10, "1.5"),
        ("r4", "2026-03-15 11:00:00", "alice", None, "blocked", 0, 0, "0"),  # never forwarded
        ("r5", "2026-03-15 11:00:00", None, None, "ok", 7, 3, None),
        ("r6", "2026-02-01 00:00:00", "alice", None, "ok", 1000, 1000, "9"),  # before since
    ]
    con.executemany(
        "INSERT INTO requests (id, ts, user_id, group_id, route, status, outcome, input_tokens, "
        "output_tokens, cost_usd) VALUES (?, ?, ?, ?, 'chat/completions', 200, ?, ?, ?, ?)",
        rows,
    )
    got = counter_rows(con, counters_since(NOW), now=NOW)
    minute = int(datetime(2026, 3, 15, 11, 50, tzinfo=UTC).timestamp() // 60)
    assert got == [
        # over two hours old: summed per hour, on the hour's last minute (09:59)
        ["alice", None, minute - 170 + 59, 1, 10, 10, 15_000_000_000],
        [None, None, minute - 50, 1, 7, 3, 0],
        ["alice", "acme", minute, 2, 100, 50, 12_345_678],
    ]
    assert counter_rows(con, "2026-03-15T10:00:00+00:00", group_id="acme", now=NOW) == [got[2]]
    c = UsageCounters()
    c.load(got)
    con.close()
    assert [
        c.usage(ALICE, "cost_usd", "day", NOW),
        c.usage(ACME, "requests", "day", NOW),
        c.member_usage("alice", "acme", "tokens", "day", NOW),
        c.usage(ANONYMOUS, "tokens", "day", NOW),
    ] == [1.5012345678, 2, 150, 10]


OVERSHOOT_CONFIG = """
[rules.cap]
usage = { metric = "cost_usd", window = "month", over = 5.5 }
action = "block"
[rulesets.everyone]
when = "always"
rules = ["cap"]
"""


def test_forty_concurrent_requests_against_a_budget_of_five_and_a_half_let_six_through() -> None:
    config = parse_config(parse_toml(OVERSHOOT_CONFIG))
    c = UsageCounters()
    facts = RequestFacts(
        Entity("user", "alice"),
        None,
        "local/mock-small",
        "chat/completions",
        NOW,
        estimate_tokens=1000,
        estimate_cost_usd=1.0,
    )
    admitted = []
    for _ in range(40):  # all start before any finishes
        decision = decide(config, facts, c)
        if decision.allowed:
            admitted.append(
                c.reserve(
                    decision.subjects,
                    user_id="alice",
                    group_id=None,
                    tokens=1000,
                    cost_usd=1.0,
                    now=NOW,
                )
            )
        else:
            assert (decision.status, decision.code) == (429, "quota_exceeded")
    assert len(admitted) == 6
    for r in admitted:  # actual cost at most the estimate
        c.settle(r, tokens_in=500, tokens_out=500, cost_usd=1.0, now=NOW)
    assert c.usage(ALICE, "cost_usd", "month", NOW) == 6.0
    assert decide(config, facts, c).allowed is False


def test_counter_rows_sum_older_usage_per_hour_then_per_day(waystone_home: Path) -> None:
    con = open_readwrite(waystone_home / "ledger.duckdb")
    rows = [
        ("a", "2026-03-15 11:30:20", 1),  # within two hours: its own minute
        ("b", "2026-03-14 20:10:00", 2),  # within two days: the hour's last minute
        ("c", "2026-03-14 20:50:00", 3),
        ("d", "2026-03-10 01:00:00", 4),  # older: the UTC day's last minute
        ("e", "2026-03-10 23:00:00", 5),
    ]
    con.executemany(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens) "
        "VALUES (?, ?, 'alice', 'chat/completions', 200, 'ok', ?)",
        rows,
    )
    got = counter_rows(con, counters_since(NOW), now=NOW)
    con.close()

    def minute(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() // 60)

    assert [(r[2], r[3], r[4]) for r in got] == [
        (minute("2026-03-10 23:59:00"), 2, 9),
        (minute("2026-03-14 20:59:00"), 2, 5),
        (minute("2026-03-15 11:30:00"), 1, 1),
    ]


INT64_MAX = 2**63 - 1


def test_a_count_beyond_64_bits_saturates_instead_of_raising() -> None:
    c = UsageCounters()
    charge(c, at(minutes=1), 0.0, tin=2**63, tout=10**30)
    assert c.usage(ALICE, "input_tokens", "1h", NOW) == float(INT64_MAX)
    assert c.usage(ALICE, "output_tokens", "1h", NOW) == float(INT64_MAX)
    assert c.usage(ALICE, "requests", "1h", NOW) == 1.0


def test_tokens_passing_int64_within_a_minute_saturate_and_the_totals_stay_exact() -> None:
    c = UsageCounters()
    c.usage(ALICE, "input_tokens", "1h", NOW)  # a cached window total, before the charges
    charge(c, at(minutes=50), 0.0, tin=5)  # an older minute, that leaves the window first
    for _ in range(3):
        charge(c, at(minutes=1), 0.0, tin=2**62)
    assert c.usage(ALICE, "input_tokens", "1h", NOW) == float(INT64_MAX + 5)
    assert c.usage(ALICE, "input_tokens", "10m", NOW) == float(INT64_MAX)
    assert c.usage(ALICE, "requests", "1h", NOW) == 4.0
    later = NOW + timedelta(minutes=15)  # the older minute left the hour: subtracted exactly
    assert c.usage(ALICE, "input_tokens", "1h", later) == float(INT64_MAX)
    assert c.usage(ALICE, "requests", "1h", later) == 3.0


def test_an_infinite_or_huge_cost_saturates_and_nan_counts_as_unpriced() -> None:
    from decimal import Decimal

    from waystone_cli.core.counters import to_units

    assert to_units(float("inf")) == INT64_MAX
    assert to_units(float("-inf")) == -(2**63)
    assert to_units(Decimal(10) ** 30) == INT64_MAX
    assert to_units(float("nan")) == 0
    c = UsageCounters()
    charge(c, at(minutes=1), float("inf"))
    charge(c, at(minutes=1), 1e300)
    assert c.usage(ALICE, "cost_usd", "1h", NOW) == INT64_MAX / 10**10
