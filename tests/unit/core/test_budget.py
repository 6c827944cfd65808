"""The budget headers: the tightest USD limit of a decision, what remains, when it frees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from waystone_cli.core.budget import (
    budget_headers,
    remaining,
    resets_at,
    tightest,
    usage_report,
)
from waystone_cli.core.config import parse_config, parse_toml
from waystone_cli.core.counters import Subject, UsageCounters
from waystone_cli.core.decision import Decision, Limit

NOW = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)
ALICE = Subject("user", "alice")
ACME = Subject("group", "acme")


def _rule(name: str, metric: str, window: str, action: str = 'action = "block"') -> str:
    over = "10" if metric == "cost_usd" else "1000"
    trigger = f'usage = {{ metric = "{metric}", window = "{window}", over = {over} }}'
    return f'[rules."{name}"]\n{trigger}\n{action}\n'


CONFIG = parse_config(
    parse_toml(
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\nmodels = ["o3", "o3-mini"]\n'
        + _rule("cost_usd-month", "cost_usd", "month")
        + _rule("cost_usd-day", "cost_usd", "day")
        + _rule("cost_usd-1h", "cost_usd", "1h")
        + _rule("tokens-day", "tokens", "day")
        + _rule("requests-day", "requests", "day")
        + _rule("downgrade", "cost_usd", "day", 'action = "change_model"\nto = "openai/o3-mini"')
    )
)


def limit(
    metric: str,
    window: str,
    used: float,
    lim: float,
    subject: str = "user:alice",
    rule: str | None = None,
) -> Limit:
    return Limit(
        ruleset="rs", rule=rule or f"{metric}-{window}", subject=subject, metric=metric,
        window=window, used=used, limit=lim,
    )  # fmt: skip


def decision(*limits: Limit, subjects: tuple[Subject, ...] = (ALICE,)) -> Decision:
    return Decision(
        allowed=True, status=200, code=None, message=None, retry_after=None, headers={},
        model="up/gpt-test", max_tokens=None, fallbacks=(), output_checks=(), datasets=(),
        capture=False, retain_days=None, rulesets=("rs",), rules=(), subjects=subjects,
        reasons=(), limits=limits,
    )  # fmt: skip


def charge(c: UsageCounters, at: datetime, cost: float, group: str | None = None) -> None:
    subjects = [ALICE] + ([ACME] if group else [])
    r = c.reserve(subjects, user_id="alice", group_id=group, tokens=1, cost_usd=0, now=at)
    c.settle(r, tokens_in=1, tokens_out=0, cost_usd=cost, now=at)


def test_the_tightest_usd_budget_is_the_one_with_least_left_after_the_own_cost() -> None:
    month = limit("cost_usd", "month", used=7.0, lim=10.0)  # 3 left
    day = limit("cost_usd", "day", used=0.5, lim=2.0)  # 1.5 left
    tokens = limit("tokens", "day", used=0, lim=1)  # not USD: never the budget
    # A downgrade at a cost ends nothing: not a budget, however close.
    downgrade = limit("cost_usd", "day", used=0.9, lim=1.0, rule="downgrade")
    credits = Limit(
        ruleset=None, rule="credits", subject="user:alice", metric="cost_usd", window="month",
        used=1.0, limit=2.0,
    )  # fmt: skip
    assert tightest([month, day, tokens, downgrade], CONFIG, own_cost_usd=0.25) == day
    assert tightest([month, day, credits], CONFIG, own_cost_usd=0.25) == credits  # 0.75 left
    assert remaining(day, 0.25) == 1.25
    assert remaining(month, 5.0) == 0.0  # an overshoot shows 0, never a negative budget
    assert tightest([tokens, downgrade], CONFIG) is None


def test_a_calendar_window_resets_at_its_end_in_the_configured_zone() -> None:
    month = limit("cost_usd", "month", used=1.0, lim=10.0)
    assert resets_at(month, [ALICE], UsageCounters(), now=NOW) == datetime(2026, 4, 1, tzinfo=UTC)
    c = UsageCounters(tz="America/New_York")
    day = limit("cost_usd", "day", used=1.0, lim=10.0)
    # Midnight in New York (UTC-4 in March after the switch) is 04:00 UTC.
    assert resets_at(day, [ALICE], c, now=NOW) == datetime(2026, 3, 16, 4, tzinfo=UTC)


def test_a_rolling_window_frees_when_its_oldest_charged_minute_leaves() -> None:
    c = UsageCounters()
    charge(c, NOW - timedelta(minutes=50), 0.0)  # a charge with no cost frees nothing
    charge(c, NOW - timedelta(minutes=40, seconds=10), 0.5)  # minute 11:20
    charge(c, NOW - timedelta(minutes=5), 0.25)
    hour = limit("cost_usd", "1h", used=0.75, lim=1.0)
    # The 11:20 minute leaves the hour when 12:21:00 comes.
    assert resets_at(hour, [ALICE], c, now=NOW) == datetime(2026, 3, 15, 12, 21, tzinfo=UTC)


def test_a_rolling_window_with_nothing_charged_frees_when_this_minute_leaves() -> None:
    hour = limit("cost_usd", "1h", used=0.0, lim=1.0)
    assert resets_at(hour, [ALICE], UsageCounters(), now=NOW) == datetime(
        2026, 3, 15, 13, 1, tzinfo=UTC
    )


def test_a_share_reads_the_members_own_series() -> None:
    c = UsageCounters()
    charge(c, NOW - timedelta(minutes=30), 0.5, group="acme")
    share = limit("cost_usd", "1h", used=0.5, lim=2.0, subject="user:alice in group:acme")
    assert resets_at(share, [ALICE, ACME], c, now=NOW) == datetime(
        2026, 3, 15, 13, 1, tzinfo=UTC
    ) - timedelta(minutes=30)


def test_headers_name_the_tightest_limit_and_none_without_a_usd_limit() -> None:
    c = UsageCounters()
    d = decision(limit("cost_usd", "month", used=2.5, lim=10.0), limit("requests", "day", 1, 5))
    assert budget_headers(d, c, CONFIG, own_cost_usd=0.125, now=NOW) == {
        "x-waystone-budget-remaining-usd": "7.375",
        "x-waystone-budget-reset": "2026-04-01T00:00:00Z",
    }
    assert budget_headers(decision(), c, CONFIG, own_cost_usd=0, now=NOW) == {}


def test_usage_report_lays_out_each_limit_and_the_tightest_windows_usage() -> None:
    c = UsageCounters()
    charge(c, NOW - timedelta(minutes=30), 0.5, group="acme")
    d = decision(
        limit("cost_usd", "month", used=0.5, lim=10.0),
        limit("cost_usd", "1h", used=0.5, lim=2.0, subject="user:alice in group:acme"),
        limit("rpm", "60s", used=1, lim=60),  # a rate limit: not shown
        subjects=(ALICE, ACME),
    )
    assert usage_report(d, c, CONFIG, user="alice", group="acme", now=NOW) == {
        "user": "alice",
        "group": "acme",
        "limits": [
            {
                "ruleset": "rs",
                "rule": "cost_usd-month",
                "subject": "user:alice",
                "metric": "cost_usd",
                "window": "month",
                "used": 0.5,
                "limit": 10.0,
                "remaining": 9.5,
                "action": "block",
                "resets_at": "2026-04-01T00:00:00Z",
            },
            {
                "ruleset": "rs",
                "rule": "cost_usd-1h",
                "subject": "user:alice in group:acme",
                "metric": "cost_usd",
                "window": "1h",
                "used": 0.5,
                "limit": 2.0,
                "remaining": 1.5,
                "action": "block",
                "resets_at": "2026-03-15T12:31:00Z",
            },
        ],  # fmt: skip
        "usage": {
            "window": "1h",
            "requests": 1,
            "input_tokens": 1,
            "output_tokens": 0,
            "cost_usd": 0.5,
        },  # fmt: skip
    }
