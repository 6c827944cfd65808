"""One ``decide()`` call's working state: credits, rule triggers, actions, the decision.

``policy.decide()`` hands it each ruleset that applies (``apply_ruleset``); its rules are
tested for each subject, cheapest trigger first, and act when they fire.  Explaining is
the same walk over every ruleset: it also records why each did or did not match, every
limit's usage and the rules that did not fire, where the request path stops at the first
trigger that does not hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import NamedTuple

from waystone_cli.core import spike
from waystone_cli.core.conditions import Facts
from waystone_cli.core.config import Config, RuleConfig, RulesetConfig
from waystone_cli.core.counters import ANONYMOUS, Subject, UsageView
from waystone_cli.core.decision import (
    Decision,
    Limit,
    Match,
    Reason,
    RequestFacts,
    Watched,
    amount,
    model_matches,
)
from waystone_cli.core.effects import Block, Effects, Firing, combine, effect_text
from waystone_cli.core.policy_plan import RulesetPlan
from waystone_cli.core.spike import SpikeHit

UNPRICED = "the request is unpriced and [server] unpriced_blocks is on"
CALENDAR_SPAN = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31)}


def window_phrase(window: str) -> str:
    return f"this {window}" if window in CALENDAR_SPAN else f"in the last {window}"


class _Test(NamedTuple):
    held: bool
    kind: str  # "policy" | "quota" | "rate" | "unpriced"
    detail: str
    retry_after: float | None = None
    hit: SpikeHit | None = None  # a spike test that held


_QUOTA_NOT_REACHED = _Test(False, "quota", "")
_RATE_NOT_REACHED = _Test(False, "rate", "")


class Evaluation:
    """The working state of one ``decide()`` call."""

    def __init__(
        self,
        config: Config,
        facts: RequestFacts,
        counters: UsageView,
        explain: bool,
    ) -> None:
        self.config = config
        self.facts = facts
        self.counters = counters
        self.explain = explain
        self.unpriced = config.server.unpriced_blocks and facts.estimate_cost_usd is None
        self.reasons: list[Reason] = []
        self.limits: list[Limit] = []
        self.rate_limits: list[Limit] = []
        self.matches: list[Match] = []
        self.applied: list[str] = []
        self.fired: dict[str, None] = {}
        self.tested: dict[tuple[str, str], list[_Test] | None] = {}
        self.firings: list[Firing] = []
        self.blocks: list[Block] = []
        self.rate_headers: dict[str, tuple[int, int, float]] = {}
        self.spikes: list[SpikeHit] = []
        self.watched: list[Watched] = []
        # The subjects, built once per request.
        self.by_kind = {"request": ANONYMOUS}
        named = []
        for entity in (facts.user, facts.group):
            if entity is not None:
                named.append(Subject(entity.kind, entity.id))
                self.by_kind[entity.kind] = named[-1]
        self.charged = tuple(named) or (ANONYMOUS,)

    # --- credits ------------------------------------------------------------------------

    def check_credits(self) -> None:
        for entity in (self.facts.user, self.facts.group):
            if entity is None or entity.credits_usd is None:
                continue
            subject = self.by_kind[entity.kind]
            window = entity.credits_window or "month"
            limit = entity.credits_usd
            used = self.counters.usage(subject, "cost_usd", window, self.facts.now)
            self.limits.append(
                Limit(None, "credits", str(subject), "cost_usd", window, used, limit)
            )
            if used < limit and not self.unpriced and not self.explain:
                continue
            state = f"{amount('cost_usd', used)} of {amount('cost_usd', limit)}"
            state = f"{state} used {window_phrase(window)}"
            if self.unpriced:
                self._block(403, "blocked", f"credits of {subject}: {UNPRICED}", None)
            elif used >= limit:
                retry = self.counters.relief(subject, "cost_usd", window, limit, self.facts.now)
                self._block(
                    429, "quota_exceeded", f"credits of {subject} exhausted: {state}", retry
                )
            elif self.explain:
                self.reasons.append(Reason(f"credits of {subject}: {state}"))

    # --- rulesets -----------------------------------------------------------------------

    def apply_ruleset(self, rp: RulesetPlan, kinds: Sequence[str]) -> None:
        """Run ``rp``'s rules for each subject it applies to (``kinds``, maybe none)."""
        rs = rp.ruleset
        subjects = tuple(self.by_kind[k] for k in kinds)
        if self.explain:
            self._explain_match(rs, subjects)
        if not subjects:
            return
        self.applied.append(rs.name)
        for subject in subjects:
            for index, rule in enumerate(rp.rules):
                self._rule(rs, rp.order, index, rule, subject)

    def _explain_match(self, rs: RulesetConfig, subjects: tuple[Subject, ...]) -> None:
        if not rs.enabled:
            self.matches.append(Match(rs.name, False, (), ("disabled",), enabled=False))
            self.reasons.append(Reason(f'ruleset "{rs.name}" is disabled', rs.name))
            return
        condition_facts = Facts(user=self.facts.user, group=self.facts.group, now=self.facts.now)
        why = tuple(rs.condition.explain(condition_facts))
        self.matches.append(Match(rs.name, bool(subjects), subjects, why))
        if subjects:
            names = ", ".join(str(s) for s in subjects)
            self.reasons.append(Reason(f'ruleset "{rs.name}" applies to {names}', rs.name))
        else:
            because = f": {'; '.join(why)}" if why else ""
            self.reasons.append(Reason(f'ruleset "{rs.name}" does not match{because}', rs.name))

    def _rule(
        self, rs: RulesetConfig, order: int, index: int, rule: RuleConfig, subject: Subject
    ) -> None:
        # A rule that several applying rulesets list is tested once per subject (tests
        # read the counters and nothing else); explaining tests each listing, so that
        # every limit it reports names its ruleset.
        key = (rule.name, subject.kind)
        if self.explain or key not in self.tested:
            self.tested[key] = self._held(rs, rule, subject)
        tests = self.tested[key]
        if tests is not None:
            self._fire(rs, order, index, rule, subject, tests)

    def _held(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> list[_Test] | None:
        """The rule's tests; None when one does not hold and none is explained."""
        tests = []
        for test in self._tests(rs, rule, subject):
            if not test.held and not self.explain:
                return None  # the other triggers cannot make it fire
            tests.append(test)
        return tests

    def _fire(
        self,
        rs: RulesetConfig,
        order: int,
        index: int,
        rule: RuleConfig,
        subject: Subject,
        tests: list[_Test],
    ) -> None:
        label = f'rule "{rule.name}" of ruleset "{rs.name}" for {subject}'
        detail = "; ".join(t.detail for t in tests) or "no trigger, always fires"
        if not all(t.held for t in tests):
            self.reasons.append(Reason(f"{label}: {detail}: not fired", rs.name, rule.name))
            return
        kinds = {t.kind for t in tests}
        kind = next((k for k in ("unpriced", "rate", "quota") if k in kinds), "policy")
        retries = [t.retry_after for t in tests if t.retry_after is not None]
        firing = Firing(rs, order, index, rule, kind, detail, max(retries, default=None))
        self.spikes += [t.hit for t in tests if t.hit is not None]
        self._record(firing, f"{subject}", self._act(firing))

    def _record(self, f: Firing, subject: str, effect: str) -> None:
        rs, rule = f.ruleset.name, f.rule.name
        self.fired[f"{rs}/{rule}"] = None
        text = f'rule "{rule}" of ruleset "{rs}" for {subject}: {f.detail}: {effect}'
        self.reasons.append(Reason(text, rs, rule))

    def _tests(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> Iterator[_Test]:
        """The rule's trigger tests, cheapest first; details only where they are shown."""
        if rule.model is not None:
            model = self.facts.model
            held = model_matches(rule.model, model)
            verb = "matches" if held else "does not match"
            yield _Test(held, "policy", f'model "{model}" {verb} "{rule.model}"')
        if rule.usage is not None:
            yield self._usage_test(rs, rule, subject)
        if rule.share is not None:
            yield self._share_test(rs, rule, subject)
        if rule.rate is not None:
            yield self._rate_test(rs, rule, subject)
        if rule.spike is not None:
            yield self._spike_test(rs, rule, subject)

    def _usage_test(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> _Test:
        u = rule.usage
        assert u is not None
        used = self.counters.usage(subject, u.metric, u.window, self.facts.now)
        self.limits.append(
            Limit(rs.name, rule.name, str(subject), u.metric, u.window, used, u.over)
        )
        if u.metric == "cost_usd" and self.unpriced:
            return _Test(True, "unpriced", UNPRICED)
        held = used >= u.over
        if not held and not self.explain:
            return _QUOTA_NOT_REACHED
        detail = (
            f"{u.metric} {window_phrase(u.window)} is {amount(u.metric, used)} of "
            f"{amount(u.metric, u.over)}{' (reached)' if held else ''}"
        )
        if not held:
            return _Test(False, "quota", detail)
        retry = self.counters.relief(subject, u.metric, u.window, u.over, self.facts.now)
        return _Test(True, "quota", detail, retry)

    def _spike_test(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> _Test:
        """The window's usage (the baseline's too past ``min``), judged by ``core.spike``."""
        sp = rule.spike
        assert sp is not None
        now = self.facts.now
        reading = spike.read(self.counters, subject, sp, now, self.explain)
        self.watched.append((subject, sp.metric, sp.window, sp.baseline))
        if reading.average is None:
            return (
                _Test(False, "quota", spike.describe(sp, reading))
                if self.explain
                else _QUOTA_NOT_REACHED
            )
        hit = spike.hit(subject, rs.name, rule.name, sp, reading, now)
        retry = spike.retry_after(self.counters, hit, sp, now) if rule.action == "block" else None
        return _Test(True, "quota", f"{spike.describe(sp, reading)} (reached)", retry, hit)

    def _share_test(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> _Test:
        share, user, group = rule.share, self.facts.user, self.facts.group
        assert share is not None
        if subject.kind != "group" or user is None or group is None:
            return _Test(False, "quota", "share applies to a group on a request that names a user")
        if group.credits_usd is None:
            return _Test(False, "quota", f"group:{group.id} has no credits")
        window = group.credits_window or "month"
        limit = round(share.max * group.credits_usd, 10)
        used = self.counters.member_usage(user.id, group.id, "cost_usd", window, self.facts.now)
        who = f"user:{user.id} in group:{group.id}"
        self.limits.append(Limit(rs.name, rule.name, who, "cost_usd", window, used, limit))
        if used < limit and not self.unpriced and not self.explain:
            return _QUOTA_NOT_REACHED
        if self.unpriced:
            return _Test(True, "unpriced", UNPRICED)
        held = used >= limit
        detail = (
            f"cost_usd of {who} {window_phrase(window)} is {amount('cost_usd', used)} of "
            f"{amount('cost_usd', limit)} ({share.max:.0%} of the group's credits)"
            f"{' (reached)' if held else ''}"
        )
        if not held:
            return _Test(False, "quota", detail)
        retry = self.counters.relief(subject, "cost_usd", window, limit, self.facts.now, user.id)
        return _Test(True, "quota", detail, retry)

    def _rate_test(self, rs: RulesetConfig, rule: RuleConfig, subject: Subject) -> _Test:
        rate = rule.rate
        assert rate is not None
        now_s = self.facts.now.timestamp()
        state = self.counters.rate(subject, self.facts.now)
        reset = max(state.reset_at - now_s, 0.0) if state.reset_at is not None else 0.0
        rpm, tpm, most = rate.rpm, rate.tpm, rate.concurrent
        for metric, limit, used, window in (
            ("rpm", rpm, state.requests, "60s"),
            ("tpm", tpm, state.tokens, "60s"),
            ("concurrent", most, state.concurrent, "now"),
        ):
            if limit is not None:
                self.rate_limits.append(
                    Limit(rs.name, rule.name, str(subject), metric, window, used, limit)
                )
        if (
            not self.explain
            and (rpm is None or state.requests < rpm)
            and (tpm is None or state.tokens < tpm)
            and (most is None or state.concurrent < most)
        ):
            # The common case, below every limit: only the headers to report.
            if rpm is not None:
                self._rate_header("requests", rpm, max(rpm - state.requests - 1, 0), reset)
            if tpm is not None:
                remaining = max(tpm - state.tokens - self.facts.estimate_tokens, 0)
                self._rate_header("tokens", tpm, remaining, reset)
            return _RATE_NOT_REACHED
        checks = [
            ("rpm", "requests", rate.rpm, state.requests, 1, "60s"),
            ("tpm", "tokens", rate.tpm, state.tokens, self.facts.estimate_tokens, "60s"),
            ("concurrent", "", rate.concurrent, state.concurrent, 1, "now"),
        ]
        held, retry, seen = False, 0.0, []
        for metric, header, limit, used, cost, window in checks:
            if limit is None:
                continue
            reached = used >= limit
            held = held or reached
            if reached:
                # A concurrency slot frees when some request ends, which has no schedule.
                retry = max(retry, reset if header else 1.0)
            if header:
                self._rate_header(header, limit, max(limit - used - cost, 0), reset)
            if self.explain:
                self.limits.append(
                    Limit(rs.name, rule.name, str(subject), metric, window, used, limit)
                )
            seen.append((metric, used, limit, reached))
        if not held and not self.explain:
            return _RATE_NOT_REACHED
        detail = ", ".join(
            f"{m} is {u} of {lim}{' (reached)' if r else ''}" for m, u, lim, r in seen
        )
        return _Test(held, "rate", detail, retry if held else None)

    def _rate_header(self, name: str, limit: int, remaining: int, reset: float) -> None:
        current = self.rate_headers.get(name)
        if current is None or remaining < current[1]:
            self.rate_headers[name] = (limit, remaining, reset)

    # --- actions ------------------------------------------------------------------------

    def _act(self, f: Firing) -> str:
        rule = f.rule
        if rule.action == "block":
            if f.kind in ("policy", "unpriced"):
                status, code = 403, "blocked"
            else:
                status, code = 429, "rate_limited" if f.kind == "rate" else "quota_exceeded"
            why = rule.message or f.detail
            message = f'blocked by ruleset "{f.ruleset.name}", rule "{rule.name}": {why}'
            self._block(status, code, message, f.retry_after)
            return "blocks the request"
        self.firings.append(f)
        return effect_text(rule)

    def _block(self, status: int, code: str, message: str, retry: float | None) -> None:
        if status == 429:
            retry = max(retry if retry is not None else 1.0, 1.0)
        self.blocks.append(Block(status, code, message, retry if status == 429 else None))

    # --- the decision -------------------------------------------------------------------

    def decision(self) -> Decision:
        fx = self._effects()
        block = self._winning_block()
        if block is not None:
            self.reasons.append(Reason(f"verdict: {block.message}"))
        return Decision(
            allowed=block is None,
            status=200 if block is None else block.status,
            code=None if block is None else block.code,
            message=None if block is None else block.message,
            retry_after=None if block is None else block.retry_after,
            headers=self._headers() if self.rate_headers else {},
            model=fx.model,
            max_tokens=fx.max_tokens,
            fallbacks=fx.fallbacks,
            output_checks=fx.output_checks,
            datasets=fx.datasets,
            capture=fx.capture,
            retain_days=fx.retain_days,
            rulesets=tuple(self.applied),
            rules=tuple(self.fired),
            subjects=self.charged,
            reasons=tuple(self.reasons),
            limits=tuple(self.limits),
            matches=tuple(self.matches),
            rate_limits=tuple(self.rate_limits),
            spikes=tuple(dict.fromkeys(self.spikes)),  # a rule two rulesets list: once
            flagged=fx.flagged,
            watched=tuple(self.watched),
        )

    def _effects(self) -> Effects:
        if not self.firings:
            return Effects(self.facts.model)
        fx, reasons = combine(self.config, self.firings, self.facts.model)
        self.reasons += reasons
        return fx

    def _winning_block(self) -> Block | None:
        if not self.blocks:
            return None
        policy = [b for b in self.blocks if b.status == 403]
        if policy:
            return policy[0]
        return max(self.blocks, key=lambda b: b.retry_after or 0.0)

    def _headers(self) -> dict[str, str]:
        headers = {}
        for name, (limit, remaining, reset) in self.rate_headers.items():
            headers[f"x-ratelimit-limit-{name}"] = str(limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
            headers[f"x-ratelimit-reset-{name}"] = f"{math.ceil(reset)}s"
        return headers
