"""What is left of a subject's USD budgets, and when each frees: self-service usage.

Read from a decision that was already made (its ``limits`` list every usage, credits and
share limit tested, with the usage *before* the request), never by a second evaluation:

- ``remaining(limit, own_cost_usd)``: the limit minus what was used, minus this request's
  own cost (never below 0).
- ``resets_at(limit, ...)``: a calendar window frees at its end (in the counters' time
  zone, as they count it); a rolling
  window when the oldest minute charged in it leaves the window (the counters' first
  bucket with a cost), or, when nothing with a cost was charged yet, when the current
  minute leaves it (this request's own charge).
- ``tightest(limits, config, own_cost_usd)``: the ``cost_usd`` budget (a limit that
  blocks once reached) with the least remaining.

The response headers and ``GET /v1/waystone/usage`` both lay these out; times are ISO
8601 in UTC to the second (``2026-12-01T00:00:00Z``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from waystone_cli.core.config import Config
from waystone_cli.core.counters import ANONYMOUS, METRICS, Subject, UsageView
from waystone_cli.core.decision import Decision, Limit, number
from waystone_cli.core.windows import CALENDAR, parse_duration

USD = "cost_usd"
REMAINING_HEADER = "x-waystone-budget-remaining-usd"
RESET_HEADER = "x-waystone-budget-reset"


def remaining(limit: Limit, own_cost_usd: float = 0.0) -> float:
    """What is left of ``limit`` after this request (its own cost counted); at least 0."""
    return max(round(limit.limit - limit.used - own_cost_usd, 10), 0.0)


def action(config: Config, limit: Limit) -> str | None:
    """What reaching ``limit`` does: entity credits block; a rule does its action."""
    if limit.ruleset is None:
        return "block"
    rule = config.rules.get(limit.rule)
    return rule.action if rule is not None else None


def tightest(limits: Iterable[Limit], config: Config, own_cost_usd: float = 0.0) -> Limit | None:
    """The USD budget with the least remaining (the first of equals); None when none.

    A budget is a USD limit that blocks once reached: a rule that only changes the
    model or flags the request at a cost does not end what the subject can spend."""
    best: Limit | None = None
    best_left = 0.0
    for lim in limits:
        if lim.metric != USD or action(config, lim) != "block":
            continue
        left = remaining(lim, own_cost_usd)
        if best is None or left < best_left:
            best, best_left = lim, left
    return best


def resets_at(
    limit: Limit, subjects: Sequence[Subject], counters: UsageView, *, now: datetime
) -> datetime:
    """When ``limit``'s window frees some of its usage (see the module); calendar
    windows are the counters' own, in their time zone."""
    found = _subject(limit.subject, subjects)
    subject, user_id = found if found is not None else (ANONYMOUS, None)
    if limit.window in CALENDAR:
        wait = counters.relief(subject, limit.metric, limit.window, limit.limit, now)
        assert wait is not None  # a calendar window always ends
        return _at(now.timestamp() + wait)
    if found is not None:
        if user_id is None:
            used = counters.usage(subject, limit.metric, limit.window, now)
        else:
            used = counters.member_usage(user_id, subject.id, limit.metric, limit.window, now)
        if used > 0:
            # Usage falls below what it is now exactly when the first bucket with a cost
            # leaves; None: only reservations, nothing charged yet.
            wait = counters.relief(subject, limit.metric, limit.window, used, now, user_id)
            if wait is not None:
                return _at(now.timestamp() + wait)
    # This request's own minute leaving the window: the latest any charge can free.
    duration = parse_duration(limit.window).total_seconds()
    return _at((now.timestamp() // 60 + 1) * 60 + duration)


def _at(epoch_s: float) -> datetime:
    # Window edges are whole seconds: rounding drops the float noise of the sums.
    return datetime.fromtimestamp(round(epoch_s), UTC)


def budget_headers(
    decision: Decision,
    counters: UsageView,
    config: Config,
    *,
    own_cost_usd: float,
    now: datetime,
) -> dict[str, str]:
    """``x-waystone-budget-*`` for the tightest USD budget of ``decision``; {} when none."""
    limit = tightest(decision.limits, config, own_cost_usd)
    if limit is None:
        return {}
    reset = resets_at(limit, decision.subjects, counters, now=now)
    return {
        REMAINING_HEADER: number(remaining(limit, own_cost_usd)),
        RESET_HEADER: iso_utc(reset),
    }


def iso_utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject(text: str, subjects: Sequence[Subject]) -> tuple[Subject, str | None] | None:
    """The counters' subject a limit names (``Limit.subject``), with the user's id for a
    member's share of a group; read from the decision's subjects, never parsed."""
    for s in subjects:
        if str(s) == text:
            return s, None
    users = [s for s in subjects if s.kind == "user"]
    groups = [s for s in subjects if s.kind == "group"]
    for user in users:
        for group in groups:
            if f"{user} in {group}" == text:
                return group, user.id
    return None


def usage_report(
    decision: Decision,
    counters: UsageView,
    config: Config,
    *,
    user: str,
    group: str | None,
    now: datetime,
) -> dict[str, Any]:
    """``GET /v1/waystone/usage``'s answer from an explained decision (SPEC §14).

    ``limits`` are the usage, credits and share limits that apply to the request's
    subjects, each with what reaching it does (rate limits are left out: they have no
    window to show); ``usage`` is the user's (inside the group when one is named) in the
    window of the tightest USD budget, else this calendar month (``usage.window``).
    """
    limits = [lim for lim in decision.limits if lim.metric in METRICS]
    tight = tightest(limits, config)
    window = tight.window if tight is not None else "month"
    if group is None:
        totals = {m: counters.usage(Subject("user", user), m, window, now) for m in _TOTALS}
    else:
        totals = {m: counters.member_usage(user, group, m, window, now) for m in _TOTALS}
    return {
        "user": user,
        "group": group,
        "limits": [
            {
                "ruleset": lim.ruleset,
                "rule": lim.rule,
                "subject": lim.subject,
                "metric": lim.metric,
                "window": lim.window,
                "used": lim.used,
                "limit": lim.limit,
                "remaining": remaining(lim),
                "action": action(config, lim),
                "resets_at": iso_utc(resets_at(lim, decision.subjects, counters, now=now)),
            }
            for lim in limits
        ],
        "usage": {
            "window": window,
            "requests": int(totals["requests"]),
            "input_tokens": int(totals["input_tokens"]),
            "output_tokens": int(totals["output_tokens"]),
            "cost_usd": totals["cost_usd"],
        },
    }


_TOTALS = ("requests", "input_tokens", "output_tokens", "cost_usd")
