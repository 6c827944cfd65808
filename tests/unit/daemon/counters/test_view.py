from __future__ import annotations

from datetime import UTC, datetime

from daemon.counters.view import RedisView, member_key, subject_key
from waystone_cli.core.counters import ANONYMOUS, Subject
from waystone_cli.core.ratelimit import RateState

NOW = datetime(2026, 12, 2, 15, 30, 20, tzinfo=UTC)
ALICE = Subject("user", "alice")


def test_subject_keys_name_users_groups_members_and_the_anonymous_pool() -> None:
    assert subject_key(ALICE) == "u:alice"
    assert subject_key(Subject("group", "acme")) == "g:acme"
    assert subject_key(ANONYMOUS) == "r:"
    assert member_key("alice", "acme") == "m:acme\x1falice"


def test_the_view_reads_what_redis_last_answered_and_zero_before() -> None:
    view = RedisView("UTC")
    assert view.usage(ALICE, "cost_usd", "month", NOW) == 0.0
    view.learn(("u:alice", "month", "cost_usd"), 1.25)
    view.learn(("m:acme\x1falice", "month", "cost_usd"), 0.5)
    assert view.usage(ALICE, "cost_usd", "month", NOW) == 1.25
    assert view.usage(ALICE, "cost_usd", "30d", NOW) == 0.0
    assert view.member_usage("alice", "acme", "cost_usd", "month", NOW) == 0.5
    view.rates["u:alice"] = [3, 120, 1, 1764689480.0]
    assert view.rate(ALICE, NOW) == RateState(3, 120, 1, 1764689480.0)
    assert view.rate(ANONYMOUS, NOW) == RateState(0, 0, 0, None)


def test_window_starts_are_the_in_memory_counters_minutes() -> None:
    view = RedisView("UTC")
    now_s = NOW.timestamp()
    assert view.clock.start("1h", now_s, NOW) == int((now_s - 3600) // 60)
    month = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert view.clock.start("month", now_s, NOW) == int(month // 60)


def test_relief_is_the_calendar_windows_end_and_a_minute_for_rolling_ones() -> None:
    view = RedisView("UTC")
    end = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert view.relief(ALICE, "cost_usd", "month", 1.0, NOW) == end - NOW.timestamp()
    assert view.relief(ALICE, "cost_usd", "30d", 1.0, NOW) == 60.0
