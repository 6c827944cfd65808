"""The policy engine: (config snapshot, request facts, usage counters) -> Decision.

``decide()`` is a pure function of its arguments (it only reads the counters).  The
daemon enforces the Decision, the ledger records it, ``waystone rules explain`` prints it.

Evaluation (SPEC §6):

1. Entity credits (``credits = {usd, window}`` on a user or group) are budgets of their
   own: once the entity's cost in the window has reached ``usd`` the request is refused
   (429 ``quota_exceeded``).
2. Every enabled ruleset whose condition matches applies, once for each subject it
   matched (``user``, ``group``, or ``request`` when the request names no one); its rules
   act on that subject.  A request naming only a user never reaches group rules.
3. A rule fires when all of its triggers hold (no trigger: it always fires): ``model``
   (a glob tested against the *requested* ``provider/model`` and the bare model),
   ``usage`` (the subject's usage, live reservations included, has reached ``over``),
   ``share`` (the named user's cost inside the subject group has reached ``max`` x the
   group's credits, in the credits' window), ``rate`` (any of rpm, tpm, concurrent
   reached), ``spike`` (the window's usage has reached ``factor`` x its average over the
   baseline, and ``min``: ``core/spike.py``).  "Reached" is ``>=``: with reserve-before-forward that bounds a budget's
   overshoot to one request (see ``core/counters.py``).  With ``[server]
   unpriced_blocks`` an unpriced request fires every cost-based trigger and credits.
4. Blocks win over everything.  A block whose triggers are only ``model`` (or none), or
   that an unpriced request caused, is a policy block: 403 ``blocked``, which wins over
   429s since retrying cannot help.  Otherwise 429, ``rate_limited`` for a rate trigger,
   else ``quota_exceeded``, with the longest Retry-After among them (at least 1 s).
5. ``change_model``: highest ruleset ``priority`` first, then TOML order of rulesets, then
   rule order; applied once (no chains), the others are reported as not applied.
   ``limit_tokens`` takes the smallest cap, ``retain`` the fewest days; fallbacks (in the
   same order as change_model), output checks, datasets and capture accumulate, each rule
   once even when it fired for two subjects; ``flag`` sets ``Decision.flagged``.

One evaluation serves the request path and ``rules explain``: ``explain=True`` only adds
the rulesets that did not match, the rules that did not fire and every limit's usage.
``core/policy_plan.py`` compiles the rulesets once per config and finds which apply to
whom, ``core/evaluation.py`` runs their rules, ``core/effects.py`` does step 5.
"""

from __future__ import annotations

from datetime import timedelta

from waystone_cli.core.config import Config
from waystone_cli.core.counters import UsageView
from waystone_cli.core.decision import (
    Decision,
    Fallback,
    Limit,
    Match,
    OutputCheck,
    Reason,
    RequestFacts,
)
from waystone_cli.core.evaluation import CALENDAR_SPAN, Evaluation, window_phrase
from waystone_cli.core.policy_plan import PolicyPlan, compile_plan
from waystone_cli.core.windows import parse_window

__all__ = [
    "Decision",
    "Fallback",
    "Limit",
    "Match",
    "OutputCheck",
    "PolicyPlan",
    "Reason",
    "RequestFacts",
    "compile_plan",
    "counted_windows",
    "decide",
    "longest_window",
    "window_phrase",
]


def decide(
    config: Config,
    facts: RequestFacts,
    counters: UsageView,
    *,
    explain: bool = False,
    plan: PolicyPlan | None = None,
) -> Decision:
    """Apply ``config``'s credits and rulesets to one request.

    ``plan`` is ``compile_plan(config)``, which the daemon's snapshot holds; without it
    one is compiled for this call.  ``explain=True`` also reports rulesets that did not
    match (with the condition's reasons), rules that did not fire and every limit's
    current usage; the daemon leaves it off to stay fast.
    """
    compiled = plan if plan is not None else compile_plan(config)
    ev = Evaluation(config, facts, counters, explain)
    ev.check_credits()
    applied = compiled.match(facts.user, facts.group, facts.now)
    for rp in compiled.rulesets if explain else applied:
        ev.apply_ruleset(rp, applied.get(rp, ()))
    return ev.decision()


def counted_windows(config: Config) -> set[str]:
    """Every window a ``usage`` rule, a ``spike`` trigger or credits count usage in."""
    windows = {r.usage.window for r in config.rules.values() if r.usage is not None}
    for spike in (r.spike for r in config.rules.values() if r.spike is not None):
        windows |= {spike.window, spike.baseline}
    credits = [u.credits for u in config.users.values()]
    credits += [g.credits for g in config.groups.values()]
    windows |= {c.window for c in credits if c is not None and c.window}
    return windows


def longest_window(config: Config) -> timedelta:
    """The longest window any rule or credits use (how long counters must keep data)."""
    spans = [parse_window(w).duration or CALENDAR_SPAN[w] for w in counted_windows(config)]
    return max(spans, default=timedelta(0))
