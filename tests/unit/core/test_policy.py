"""The policy engine: each trigger, each action, precedence, priority and subjects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from waystone_cli.core.config import Config, parse_config, parse_toml
from waystone_cli.core.counters import ANONYMOUS, Subject, UsageCounters
from waystone_cli.core.entities import Entity
from waystone_cli.core.policy import (
    Decision,
    Fallback,
    Limit,
    Match,
    OutputCheck,
    RequestFacts,
    decide,
    longest_window,
)

NOW = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)

BASE = """
[providers.openai]
base_url = "https://api.openai.com/v1"
models = ["o3", "o3-mini", "gpt-4o", "gpt-4o-mini"]
[providers.eu]
base_url = "https://eu.example.com/v1"
models = ["gpt-4o-eu"]
"""

ALICE = Entity("user", "alice", {"tier": "free"})
BOB = Entity("user", "bob", {"tier": "pro"})
ACME = Entity(
    "group", "acme", {"region": "eu", "tier": "free"}, credits_usd=100.0, credits_window="month"
)


def config(toml: str, server: str = "") -> Config:
    return parse_config(parse_toml(BASE + toml + server))


def facts(
    user: Entity | None = ALICE,
    group: Entity | None = None,
    model: str = "openai/o3",
    cost: float | None = 0.01,
    tokens: int = 1000,
) -> RequestFacts:
    return RequestFacts(user, group, model, "chat/completions", NOW, tokens, cost)


def spend(
    c: UsageCounters,
    cost: float,
    user: str | None = "alice",
    group: str | None = None,
    when: datetime = NOW,
) -> None:
    subjects = [
        s
        for s in (
            Subject("user", user) if user else None,
            Subject("group", group) if group else None,
        )
        if s
    ] or [ANONYMOUS]
    r = c.reserve(subjects, user_id=user, group_id=group, tokens=0, cost_usd=0, now=when)
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=cost, now=when)


def summary(d: Decision) -> tuple[object, ...]:
    return (d.allowed, d.status, d.code, d.model, d.max_tokens, d.rulesets, d.rules)


@dataclass(frozen=True)
class Case:
    name: str
    toml: str
    facts: RequestFacts
    expected: tuple[object, ...]
    setup: Callable[[UsageCounters], None] = lambda c: None
    server: str = ""


DOWNGRADE = """
[rules.downgrade-o3]
model = "o3"
action = "change_model"
to = "o3-mini"
[rulesets.free-tier]
when = "user.tier = free"
rules = ["downgrade-o3"]
"""
CAP = """
[rules.cap-10-usd]
usage = { metric = "cost_usd", window = "month", over = 10 }
action = "block"
[rulesets.free-tier]
when = "tier = free"
rules = ["cap-10-usd"]
"""
SHARE = """
[rules.member-share]
share = { of = "credits", max = 0.10 }
action = "block"
[rulesets.orgs]
when = "has group"
rules = ["member-share"]
"""
EU = """
[rules.eu-route]
action = "change_model"
to = "eu/gpt-4o-eu"
[rulesets.eu-orgs]
when = "group.region = eu"
rules = ["eu-route"]
"""
RPM = """
[rules.rpm-2]
rate = { rpm = 2 }
action = "block"
[rulesets.everyone]
when = "always"
rules = ["rpm-2"]
"""
OK_FREE = (True, 200, None, "openai/o3", None, ("free-tier",), ())
CASES = [
    Case(
        "model glob downgrades",
        DOWNGRADE,
        facts(),
        (True, 200, None, "openai/o3-mini", None, ("free-tier",), ("free-tier/downgrade-o3",)),
    ),
    Case(
        "model glob tests the bare model too",
        DOWNGRADE.replace('"o3"', '"o*"'),
        facts(),
        (True, 200, None, "openai/o3-mini", None, ("free-tier",), ("free-tier/downgrade-o3",)),
    ),
    Case(
        "model glob that does not match",
        DOWNGRADE,
        facts(model="openai/gpt-4o"),
        (True, 200, None, "openai/gpt-4o", None, ("free-tier",), ()),
    ),
    Case(
        "condition that does not match",
        DOWNGRADE,
        facts(user=BOB),
        (True, 200, None, "openai/o3", None, (), ()),
    ),
    Case(
        "disabled ruleset",
        DOWNGRADE + "enabled = false",
        facts(),
        (True, 200, None, "openai/o3", None, (), ()),
    ),
    Case("usage below the limit", CAP, facts(), OK_FREE, lambda c: spend(c, 9.99)),
    Case(
        "usage reached exactly",
        CAP,
        facts(),
        (
            False,
            429,
            "quota_exceeded",
            "openai/o3",
            None,
            ("free-tier",),
            ("free-tier/cap-10-usd",),
        ),
        lambda c: spend(c, 10),
    ),
    Case(
        "usage of last month does not count",
        CAP,
        facts(),
        OK_FREE,
        lambda c: spend(c, 50, when=NOW - timedelta(days=15)),
    ),
    Case(
        "usage is per subject: the group's spend is not the user's",
        CAP,
        facts(),
        OK_FREE,
        lambda c: spend(c, 50, user="bob", group="acme"),
    ),
    Case(
        "usage over on the group subject blocks a member",
        CAP,
        facts(user=BOB, group=ACME),
        (
            False,
            429,
            "quota_exceeded",
            "openai/o3",
            None,
            ("free-tier",),
            ("free-tier/cap-10-usd",),
        ),
        lambda c: spend(c, 10, user="carol", group="acme"),
    ),
    Case(
        "unpriced request with unpriced_blocks",
        CAP,
        facts(cost=None),
        (False, 403, "blocked", "openai/o3", None, ("free-tier",), ("free-tier/cap-10-usd",)),
        server="[server]\nunpriced_blocks = true\n",
    ),
    Case("unpriced request without unpriced_blocks", CAP, facts(cost=None), OK_FREE),
    Case(
        "share reached",
        SHARE,
        facts(group=ACME),
        (False, 429, "quota_exceeded", "openai/o3", None, ("orgs",), ("orgs/member-share",)),
        lambda c: spend(c, 10, group="acme"),
    ),
    Case(
        "share of another member",
        SHARE,
        facts(group=ACME),
        (True, 200, None, "openai/o3", None, ("orgs",), ()),
        lambda c: spend(c, 50, user="bob", group="acme"),
    ),
    Case(
        "share counts only usage inside the group",
        SHARE,
        facts(group=ACME),
        (True, 200, None, "openai/o3", None, ("orgs",), ()),
        lambda c: spend(c, 50),
    ),
    Case(
        "group routing applies when the group is named",
        EU,
        facts(user=BOB, group=ACME),
        (True, 200, None, "eu/gpt-4o-eu", None, ("eu-orgs",), ("eu-orgs/eu-route",)),
    ),
    Case(
        "a user-only request never hits group rules",
        EU,
        facts(user=BOB),
        (True, 200, None, "openai/o3", None, (), ()),
    ),
    Case(
        "rpm not reached",
        RPM,
        facts(),
        (True, 200, None, "openai/o3", None, ("everyone",), ()),
        lambda c: spend(c, 0),
    ),
    Case(
        "rpm reached",
        RPM,
        facts(),
        (False, 429, "rate_limited", "openai/o3", None, ("everyone",), ("everyone/rpm-2",)),
        lambda c: (spend(c, 0, when=NOW - timedelta(seconds=59)), spend(c, 0)),
    ),
    Case(
        "rpm of requests over a minute old",
        RPM,
        facts(),
        (True, 200, None, "openai/o3", None, ("everyone",), ()),
        lambda c: (spend(c, 0, when=NOW - timedelta(seconds=60)), spend(c, 0)),
    ),
    Case(
        "an anonymous request is the subject request",
        RPM,
        facts(user=None),
        (False, 429, "rate_limited", "openai/o3", None, ("everyone",), ("everyone/rpm-2",)),
        lambda c: (spend(c, 0, user=None), spend(c, 0, user=None)),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    counters = UsageCounters()
    case.setup(counters)
    assert summary(decide(config(case.toml, case.server), case.facts, counters)) == case.expected


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_request_path_decides_as_the_full_walk_does(case: Case) -> None:
    # explain=True walks every ruleset afresh; the request path runs the plan's program.
    counters = UsageCounters()
    case.setup(counters)
    cfg = config(case.toml, case.server)
    fast, walked = (
        decide(cfg, case.facts, counters),
        decide(cfg, case.facts, counters, explain=True),
    )
    assert (summary(fast), fast.headers, fast.retry_after, fast.message) == (
        summary(walked),
        walked.headers,
        walked.retry_after,
        walked.message,
    )


def test_concurrent_limit_counts_requests_in_flight() -> None:
    cfg = config(RPM.replace("rpm = 2", "concurrent = 1"))
    c = UsageCounters()
    r = c.reserve(
        [Subject("user", "alice")],
        user_id="alice",
        group_id=None,
        tokens=1,
        cost_usd=0,
        now=NOW - timedelta(minutes=5),
    )
    d = decide(cfg, facts(), c)
    assert (d.status, d.code, d.retry_after, d.message) == (
        429,
        "rate_limited",
        1.0,
        'blocked by ruleset "everyone", rule "rpm-2": concurrent is 1 of 1 (reached)',
    )
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0, now=NOW)
    assert decide(cfg, facts(), c).allowed


def test_rate_limit_headers_and_retry_after_name_the_tightest_limit() -> None:
    cfg = config(RPM.replace("rate = { rpm = 2 }", "rate = { rpm = 2, tpm = 5000 }"))
    c = UsageCounters()
    r = c.reserve(
        [Subject("user", "alice")],
        user_id="alice",
        group_id=None,
        tokens=900,
        cost_usd=0,
        now=NOW - timedelta(seconds=45),
    )
    c.settle(r, tokens_in=600, tokens_out=400, cost_usd=0, now=NOW - timedelta(seconds=40))
    d = decide(cfg, facts(tokens=1500), c)
    assert (d.allowed, dict(d.headers)) == (
        True,
        {
            "x-ratelimit-limit-requests": "2",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "15s",
            "x-ratelimit-limit-tokens": "5000",
            "x-ratelimit-remaining-tokens": "2500",
            "x-ratelimit-reset-tokens": "15s",
        },
    )
    spend(c, 0)
    d = decide(cfg, facts(), c)
    assert (d.status, d.retry_after, d.message) == (
        429,
        15.0,
        'blocked by ruleset "everyone", rule "rpm-2": rpm is 2 of 2 (reached), tpm is 1002 of 5000',
    )


CREDITS = """
[rules.noop]
action = "capture"
[rulesets.nobody]
when = "user.tier = none"
rules = ["noop"]
"""


def test_entity_credits_are_a_budget_by_themselves() -> None:
    c = UsageCounters()
    spend(c, 100, user="bob", group="acme")
    d = decide(config(CREDITS), facts(group=ACME), c)
    assert (d.allowed, d.status, d.code, d.message, d.retry_after) == (
        False,
        429,
        "quota_exceeded",
        "credits of group:acme exhausted: $100 of $100 used this month",
        (datetime(2026, 4, 1, tzinfo=UTC) - NOW).total_seconds(),
    )
    assert decide(config(CREDITS), facts(), c).allowed  # alice alone is not the group


PRECEDENCE = """
[rules.no-o3]
model = "o3"
action = "block"
message = "o3 is not for this tier"
[rules.cap]
usage = { metric = "requests", window = "day", over = 1 }
action = "block"
[rules.downgrade]
action = "change_model"
to = "o3-mini"
[rulesets.a]
when = "always"
rules = ["cap", "downgrade", "no-o3"]
"""


def test_a_policy_block_wins_over_quota_blocks_and_every_other_action() -> None:
    c = UsageCounters()
    spend(c, 0)
    d = decide(config(PRECEDENCE), facts(), c)
    assert summary(d) == (
        False,
        403,
        "blocked",
        "openai/o3-mini",
        None,
        ("a",),
        ("a/cap", "a/downgrade", "a/no-o3"),
    )
    assert (d.message, d.retry_after) == (
        'blocked by ruleset "a", rule "no-o3": o3 is not for this tier',
        None,
    )


PRIORITY = """
[rules.to-mini]
action = "change_model"
to = "gpt-4o-mini"
[rules.to-eu]
action = "change_model"
to = "eu/gpt-4o-eu"
[rules.to-o3-mini]
action = "change_model"
to = "o3-mini"
[rulesets.first]
when = "always"
rules = ["to-mini"]
[rulesets.second]
when = "always"
rules = ["to-o3-mini", "to-eu"]
"""


@pytest.mark.parametrize(
    ("priorities", "expected"),
    [
        ((0, 0), "openai/gpt-4o-mini"),  # TOML order
        ((0, 5), "openai/o3-mini"),  # higher priority first, then rule order
        ((-1, 0), "openai/o3-mini"),
        ((7, 5), "openai/gpt-4o-mini"),
    ],
)
def test_change_model_applies_once_by_priority_then_toml_order(
    priorities: tuple[int, int], expected: str
) -> None:
    toml = PRIORITY.replace(
        'rules = ["to-mini"]', f'rules = ["to-mini"]\npriority = {priorities[0]}'
    )
    toml = toml.replace(
        'rules = ["to-o3-mini", "to-eu"]',
        f'rules = ["to-o3-mini", "to-eu"]\npriority = {priorities[1]}',
    )
    d = decide(config(toml), facts(), UsageCounters())
    assert (d.model, d.rules) == (expected, ("first/to-mini", "second/to-o3-mini", "second/to-eu"))


ACCUMULATE = """
[rules.cap-500]
action = "limit_tokens"
max = 500
[rules.cap-200]
action = "limit_tokens"
max = 200
[rules.keep-60]
action = "retain"
days = 60
[rules.keep-7]
action = "retain"
days = 7
[rules.review]
action = "dataset"
name = "review"
[rules.newcomers]
action = "dataset"
name = "newcomers"
[rules.capture]
action = "capture"
[rules.retry-mini]
action = "fallback"
to = "gpt-4o-mini"
retries = 2
[rules.no-secrets]
action = "check_output"
deny_regex = "sk-[a-z]+"
on_fail = "flag"
[rulesets.low]
when = "tier = free"
rules = ["cap-500", "keep-60", "review", "no-secrets"]
[rulesets.high]
when = "always"
priority = 3
rules = ["cap-200", "keep-7", "newcomers", "review", "capture", "retry-mini"]
"""


def test_caps_retention_datasets_checks_and_fallbacks_accumulate() -> None:
    d = decide(config(ACCUMULATE), facts(group=ACME), UsageCounters())
    assert (d.max_tokens, d.retain_days, d.datasets, d.capture, d.fallbacks, d.output_checks) == (
        200,
        7,
        ("newcomers", "review"),
        True,
        (Fallback("openai/gpt-4o-mini", 2, "high", "retry-mini"),),
        (OutputCheck("low", "no-secrets", "sk-[a-z]+", None, "flag"),),
    )
    # "tier = free" matched both alice and acme; each rule still acts once.
    assert d.subjects == (Subject("user", "alice"), Subject("group", "acme"))
    assert d.rules == (
        "low/cap-500",
        "low/keep-60",
        "low/review",
        "low/no-secrets",
        "high/cap-200",
        "high/keep-7",
        "high/newcomers",
        "high/review",
        "high/capture",
        "high/retry-mini",
    )


def test_a_ruleset_matching_user_and_group_checks_each_subjects_usage() -> None:
    c = UsageCounters()
    spend(c, 10, user="carol", group="acme")
    d = decide(config(CAP), facts(group=ACME), c, explain=True)
    assert d.limits == (
        Limit(None, "credits", "group:acme", "cost_usd", "month", 10.0, 100.0),
        Limit("free-tier", "cap-10-usd", "user:alice", "cost_usd", "month", 0.0, 10.0),
        Limit("free-tier", "cap-10-usd", "group:acme", "cost_usd", "month", 10.0, 10.0),
    )
    assert d.message == (
        'blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd this month is $10 of $10 (reached)'
    )


def test_explain_gives_every_reason_in_plain_language() -> None:
    c = UsageCounters()
    spend(c, 2.5)
    toml = (
        DOWNGRADE
        + CAP.replace("[rulesets.free-tier]", "[rulesets.capped]")
        + EU
        + """
[rules.slow]
model = "o3"
action = "change_model"
to = "gpt-4o"
[rulesets.late]
when = "user.tier = free"
rules = ["slow"]
"""
    )
    d = decide(config(toml), facts(), c, explain=True)
    assert [str(r) for r in d.reasons] == [
        'ruleset "free-tier" applies to user:alice',
        'rule "downgrade-o3" of ruleset "free-tier" for user:alice: model "openai/o3" matches "o3": '
        'change the model to "o3-mini"',
        'ruleset "capped" applies to user:alice',
        'rule "cap-10-usd" of ruleset "capped" for user:alice: cost_usd this month is $2.5 of $10: '
        "not fired",
        'ruleset "eu-orgs" does not match: group.region = eu: missing, fails; no match',
        'ruleset "late" applies to user:alice',
        'rule "slow" of ruleset "late" for user:alice: model "openai/o3" matches "o3": change the '
        'model to "gpt-4o"',
        'model changed from "openai/o3" to "openai/o3-mini" by ruleset "free-tier", rule '
        '"downgrade-o3"',
        'rule "slow" of ruleset "late" not applied: the model was already changed by ruleset '
        '"free-tier" (change_model applies once)',
    ]
    assert d.matches[2] == Match("eu-orgs", False, (), tuple(d.matches[2].why))
    assert [m.matched for m in d.matches] == [True, True, False, True]


def test_longest_window_reads_rules_and_credits() -> None:
    toml = CAP.replace('window = "month"', 'window = "45d"')
    assert longest_window(config(toml)) == timedelta(days=45)
    assert longest_window(config(CAP)) == timedelta(days=31)
    assert longest_window(config(DOWNGRADE)) == timedelta(0)


# --- the request path's caches (core/policy_plan.py) -----------------------------------


def test_the_request_path_reasons_name_each_fired_rule_then_the_model_change_and_verdict() -> None:
    c = UsageCounters()
    spend(c, 12)
    toml = DOWNGRADE + CAP.replace("[rulesets.free-tier]", "[rulesets.capped]")
    toml += '[rules.slow]\nmodel = "o3"\naction = "change_model"\nto = "gpt-4o"\n'
    toml += '[rulesets.late]\nwhen = "user.tier = free"\nrules = ["slow"]\n'
    d = decide(config(toml), facts(), c)
    assert [str(r) for r in d.reasons] == [
        'rule "downgrade-o3" of ruleset "free-tier" for user:alice: model "openai/o3" matches "o3": '
        'change the model to "o3-mini"',
        'rule "cap-10-usd" of ruleset "capped" for user:alice: cost_usd this month is $12 of $10 '
        "(reached): blocks the request",
        'rule "slow" of ruleset "late" for user:alice: model "openai/o3" matches "o3": change the '
        'model to "gpt-4o"',
        'model changed from "openai/o3" to "openai/o3-mini" by ruleset "free-tier", rule '
        '"downgrade-o3"',
        'rule "slow" of ruleset "late" not applied: the model was already changed by ruleset '
        '"free-tier" (change_model applies once)',
        'verdict: blocked by ruleset "capped", rule "cap-10-usd": cost_usd this month is $12 of $10 '
        "(reached)",
    ]
    assert (d.status, d.code, d.model, d.rules) == (
        429,
        "quota_exceeded",
        "openai/o3-mini",
        ("free-tier/downgrade-o3", "capped/cap-10-usd", "late/slow"),
    )


def test_an_entity_whose_metadata_changed_is_matched_again() -> None:
    cfg = config(DOWNGRADE)
    assert decide(cfg, facts(ALICE), UsageCounters()).model == "openai/o3-mini"
    upgraded = Entity("user", "alice", {"tier": "pro"})
    assert summary(decide(cfg, facts(upgraded), UsageCounters())) == (
        True, 200, None, "openai/o3", None, (), ()
    )  # fmt: skip
    assert decide(cfg, facts(ALICE), UsageCounters()).model == "openai/o3-mini"


def test_joined_within_stops_matching_the_same_entity_once_it_is_older() -> None:
    cfg = config(DOWNGRADE.replace('"user.tier = free"', '"user.joined within 1d"'))
    newcomer = Entity("user", "nina", {}, first_seen=NOW - timedelta(hours=23))
    c = UsageCounters()
    at = [NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=1, seconds=1), NOW]
    models = [
        decide(cfg, RequestFacts(newcomer, None, "openai/o3", "chat", when, 10, 0.1), c).model
        for when in at
    ]
    # first seen + 1d is NOW + 1h: the term holds until then, inclusive.
    assert models == ["openai/o3-mini", "openai/o3-mini", "openai/o3", "openai/o3-mini"]


def test_a_counter_rule_two_rulesets_list_is_tested_once_and_fires_for_each() -> None:
    c = UsageCounters()
    spend(c, 10)
    toml = CAP + '[rulesets.again]\nwhen = "user.tier = free"\nrules = ["cap-10-usd"]\n'
    d = decide(config(toml), facts(), c)
    assert (d.status, d.rulesets, d.rules, d.message) == (
        429,
        ("free-tier", "again"),
        ("free-tier/cap-10-usd", "again/cap-10-usd"),
        'blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd this month is $10 of $10 '
        "(reached)",
    )


def test_a_reloaded_config_is_decided_by_its_own_rulesets() -> None:
    first = config(DOWNGRADE)
    second = config(DOWNGRADE.replace('to = "o3-mini"', 'to = "gpt-4o-mini"'))
    models = [decide(cfg, facts(), UsageCounters()).model for cfg in (first, second, first)]
    assert models == ["openai/o3-mini", "openai/gpt-4o-mini", "openai/o3-mini"]


def test_a_disabled_ruleset_is_left_out_of_the_request_path() -> None:
    cfg = config(
        DOWNGRADE.replace('rules = ["downgrade-o3"]', 'rules = ["downgrade-o3"]\nenabled = false')
    )
    assert summary(decide(cfg, facts(), UsageCounters())) == (
        True, 200, None, "openai/o3", None, (), ()
    )  # fmt: skip
