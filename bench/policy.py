"""Time the policy engine on the request path: decide() + reserve() + settle().

    python bench/policy.py [--users 10000] [--rulesets 20] [--requests 200000] [--budget] [--spike]

10,000 distinct users in 50 groups, each with a month of history (one settled request
a day), and 20 rulesets mixing scoped and unscoped conditions, usage caps on calendar
and rolling windows, a member share, rpm limits, downgrades and token caps.  Requests
cycle through the users one second apart so windows keep moving; each user makes one
untimed request first, so the figures are a running gateway's (window totals and the
policy plan's per-entity entries already built).  Prints microseconds per request with
the rulesets and with none, and the counters' memory.  ``--budget`` also times the
rulesets with the budget headers computed after each decision, as the daemon does.
``--spike`` also times the rulesets plus one (``always``) with a spike rule on
``cost_usd`` (1h window, 7d baseline), twice: ``min = 1`` USD, out of reach (the window
alone is read), and ``min = 0.001`` with ``factor = 100``: within reach (both values
read, then judged, never firing) whenever the user's last hour holds a request, which in
this loop (each user back every ``--users`` seconds) is seldom.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from waystone_cli.core.budget import budget_headers  # noqa: E402
from waystone_cli.core.config import Config, parse_config, parse_toml  # noqa: E402
from waystone_cli.core.counters import UsageCounters  # noqa: E402
from waystone_cli.core.entities import Entity  # noqa: E402
from waystone_cli.core.policy import RequestFacts, compile_plan, decide  # noqa: E402

RULES = """
[providers.openai]
base_url = "https://api.openai.com/v1"
models = ["o3", "o3-mini", "gpt-4o", "gpt-4o-mini"]
[rules.downgrade-o3]
model = "o3"
action = "change_model"
to = "o3-mini"
[rules.cap-month]
usage = { metric = "cost_usd", window = "month", over = 10 }
action = "block"
[rules.cap-30d]
usage = { metric = "tokens", window = "30d", over = 5000000 }
action = "block"
[rules.cap-day]
usage = { metric = "requests", window = "day", over = 1000 }
action = "block"
[rules.rpm]
rate = { rpm = 600 }
action = "block"
[rules.share]
share = { of = "credits", max = 0.1 }
action = "block"
[rules.cap-tokens]
action = "limit_tokens"
max = 4096
[rules.review]
action = "dataset"
name = "review"
"""
CONDITIONS = [
    ("user.tier = free", ["downgrade-o3", "cap-month"]),
    ("tier = pro", ["cap-30d"]),
    ("has group", ["share"]),
    ("always", ["rpm"]),
    ("group.region = eu", ["cap-tokens"]),
    ("user.joined within 30d", ["review"]),
    ("user.tier = free and not has group", ["cap-day"]),
    ("user.plan exists", ["cap-tokens"]),
    ("group.region != us or user.tier = pro", ["cap-day"]),
    ("user.beta is true", ["downgrade-o3"]),
]


SPIKE = """
[rules.runaway]
spike = {{ metric = "cost_usd", window = "1h", factor = {factor}, baseline = "7d", min = {min} }}
action = "flag"
[rulesets.watch]
when = "always"
rules = ["runaway"]
"""


def build_config(rulesets: int, spike: tuple[float, float] | None = None) -> Config:
    text = RULES
    if spike is not None:
        text += SPIKE.format(factor=spike[0], min=spike[1])
    for i in range(rulesets):
        when, rules = CONDITIONS[i % len(CONDITIONS)]
        listed = ", ".join(f'"{r}"' for r in rules)
        text += f'[rulesets.rs-{i}]\nwhen = "{when}"\nrules = [{listed}]\npriority = {i % 3}\n'
    for g in range(50):
        text += f'[groups.g{g}]\ncredits = {{ usd = 500, window = "month" }}\n'
    return parse_config(parse_toml(text))


def entities(users: int, now: datetime) -> list[tuple[Entity, Entity]]:
    out = []
    for u in range(users):
        meta = {"tier": ("free", "pro")[u % 2], "beta": u % 7 == 0}
        user = Entity("user", f"u{u}", meta, first_seen=now - timedelta(days=u % 60))
        group = Entity(
            "group",
            f"g{u % 50}",
            {"region": ("eu", "us")[u % 2]},
            credits_usd=500.0,
            credits_window="month",
        )
        out.append((user, group))
    return out


def history(counters: UsageCounters, users: int, now: datetime) -> None:
    start = int((now - timedelta(days=30)).timestamp() // 60)
    counters.load(
        [f"u{u}", f"g{u % 50}", start + day * 1440 + u % 1440, 1, 500, 200, 20_000_000]
        for day in range(30)
        for u in range(users)
    )


def run(
    config: Config,
    people: list[tuple[Entity, Entity]],
    counters: UsageCounters | None,
    requests: int,
    now: datetime,
    budget: bool = False,
) -> float:
    """Microseconds per request; with ``counters=None`` only the loop and the facts."""
    plan = compile_plan(config)  # as the daemon's config snapshot holds it
    started = time.perf_counter()
    for i in range(requests):
        user, group = people[i % len(people)]
        when = now + timedelta(seconds=i)
        facts = RequestFacts(
            user=user,
            group=group,
            model="openai/o3",
            route="chat/completions",
            now=when,
            estimate_tokens=1500,
            estimate_cost_usd=0.002,
        )
        if counters is None:
            continue
        decision = decide(config, facts, counters, plan=plan)
        if decision.allowed:
            r = counters.reserve(
                decision.subjects,
                user_id=user.id,
                group_id=group.id,
                tokens=1500,
                cost_usd=0.002,
                now=when,
            )
            if budget and decision.limits:
                budget_headers(decision, counters, config, own_cost_usd=0.002, now=when)
            counters.settle(r, tokens_in=400, tokens_out=300, cost_usd=0.0011, now=when)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rulesets", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--budget", action="store_true", help="also time the budget headers")
    parser.add_argument("--spike", action="store_true", help="also time a spike rule")
    args = parser.parse_args()
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    people = entities(args.users, now)
    # The machine may be shared: the loop's own cost is the yardstick to read ratios by.
    loop = run(build_config(0), people, None, args.requests, now)
    print(f"loop and RequestFacts alone: {loop:.1f} us per request")
    cases: list[tuple[int, bool, tuple[float, float] | None]] = [
        (args.rulesets, False, None),
        (0, False, None),
    ]
    cases += [(args.rulesets, True, None)] if args.budget else []
    cases += (
        [(args.rulesets, False, (10, 1)), (args.rulesets, False, (100, 0.001))]
        if args.spike
        else []
    )
    for rulesets, budget, spike in cases:
        counters = UsageCounters()
        tracemalloc.start()
        history(counters, args.users, now)
        memory = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        config = build_config(rulesets, spike)
        # One untimed request per user first: a running gateway has met its active users
        # (the first request of each pays for caching its window totals and ruleset matches).
        run(config, people, counters, len(people), now - timedelta(seconds=len(people)))
        us = run(config, people, counters, args.requests, now, budget)
        steps = (
            "decide + reserve + budget headers + settle" if budget else "decide + reserve + settle"
        )
        extra = "" if spike is None else f" + spike (factor {spike[0]:g}, min {spike[1]:g})"
        print(
            f"{rulesets:>2} rulesets{extra}, {args.users} users: {us - loop:7.1f} us per request "
            f"({steps}); counters with 30 days of history: {memory:.0f} MB"
        )


if __name__ == "__main__":
    main()
