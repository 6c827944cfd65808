"""A config's policy prepared once for the request path, and which rulesets match whom.

``decide()`` runs on every proxied request, with the same config snapshot for thousands
of requests and thousands of users who differ in a few metadata values.  So:

- ``PolicyPlan`` holds what depends on the config alone: the enabled rulesets in TOML
  order with their rules resolved, the terms their conditions read, the model globs'
  verdicts per requested model.  ``plan(config)`` builds it on first use and keeps it on
  the config object, which is immutable and replaced whole on reload, so a plan lives
  exactly as long as its config.
- ``PolicyPlan.match()`` finds which rulesets apply to a request, and to whom.  A
  condition's verdict depends only on which entities the request names and on the truth
  of its terms (``tier = free``, ``user.joined within 30d``, ...), each read once on its
  scope's entity or, unscoped, on each named entity.  So each distinct term of the config
  is tested once per request, and the tuple of those truths (the signature) keys the
  outcome: 10,000 users who differ in a handful of values share a handful of outcomes,
  and a user seen for the first time costs the term tests, not every condition.  The
  table of outcomes is emptied when it reaches ``MAX_OUTCOMES``, which bounds it.
- Per outcome and requested model, ``program()`` lays out the rules to run in
  evaluation order: a rule that reads no counters (a ``model`` trigger or none) is
  decided there once, with its firing, block and reason text ready (a ``Fire``); the
  others are tested against the counters on every request (a ``Check``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from waystone_cli.core.condition_tree import Facts, FieldTerm, JoinedWithin
from waystone_cli.core.config import Config, RuleConfig, RulesetConfig
from waystone_cli.core.decision import Reason, model_matches
from waystone_cli.core.effects import Block, Effects, Firing, combine, effect_text
from waystone_cli.core.entities import Entity

MAX_OUTCOMES = 10_000
MAX_ENTITIES = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MODELS = 1_000
_KINDS = ("user", "group", "request")
_SLOT = "_waystone_policy_plan"

Term = FieldTerm | JoinedWithin


@dataclass(frozen=True)
class RulesetPlan:
    order: int  # position among all rulesets in the TOML
    ruleset: RulesetConfig
    rules: tuple[RuleConfig, ...]


class Fire(NamedTuple):
    """A rule that reads no counters and fires for the model: all but the subject known."""

    kind: str  # the subject's kind
    key: str  # "ruleset/rule"
    firing: Firing
    block: Block | None  # for a block rule
    head: str  # the reason's text before the subject
    tail: str  # and after it


class Check(NamedTuple):
    """A rule with a usage, share or rate trigger, tested on each request."""

    kind: str  # the subject's kind
    ruleset: RulesetConfig
    order: int
    position: int
    rule: RuleConfig
    test: int  # its index in ``Program.tests``: a rule is tested once per subject kind


@dataclass(frozen=True)
class Program:
    """The steps for one outcome and model, and what its ``Fire`` steps alone do.

    ``tests`` are the ``Check`` steps to test, one per rule and subject kind, in order;
    ``fires`` the ``Fire`` steps alone, all there is to walk when no test holds.
    """

    steps: tuple[Fire | Check, ...]
    effects: Effects
    reasons: tuple[Reason, ...]  # about the effects (a change_model not applied, ...)
    tests: tuple[Check, ...]
    fires: tuple[Fire, ...]


@dataclass(frozen=True, eq=False)
class Outcome:
    """The rulesets that apply to a pair, each with the subject kinds it applies to."""

    applied: tuple[tuple[RulesetPlan, tuple[str, ...]], ...]
    names: tuple[str, ...]
    programs: dict[str, Program] = field(default_factory=dict)  # by requested model


class PolicyPlan:
    """The request path's view of one config snapshot (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rulesets = tuple(
            RulesetPlan(order, rs, tuple(config.rules[name] for name in rs.rules))
            for order, rs in enumerate(config.rulesets.values())
            if rs.enabled
        )
        terms: dict[Any, Term] = {}
        for rp in self.rulesets:
            for term in rp.ruleset.condition.terms():
                terms.setdefault(_term_key(term), term)
        # What an entity named as the user (or the group) is tested on: the terms scoped
        # to it and the unscoped ones; "joined within" terms as their durations.
        self._fields = {
            kind: tuple(
                t for t in terms.values() if isinstance(t, FieldTerm) and _scope(t) in (kind, None)
            )
            for kind in ("user", "group")
        }
        self._joined = {
            kind: tuple(
                t.duration
                for t in terms.values()
                if isinstance(t, JoinedWithin) and _scope(t) in (kind, None)
            )
            for kind in ("user", "group")
        }
        self._known: dict[tuple[str, str], _Known] = {}
        used = {rule.name: rule for rp in self.rulesets for rule in rp.rules}
        # Rules that read no counters: whether they fire depends on the model alone.
        self.static = frozenset(
            name
            for name, r in used.items()
            if r.usage is None and r.share is None and r.rate is None
        )
        self.effects = {name: effect_text(rule) for name, rule in used.items()}
        self._outcomes: dict[tuple[object, object], Outcome] = {}
        self._nothing = Outcome((), ())
        self._models: dict[tuple[str, str], bool] = {}
        self._details: dict[tuple[str, str], str | None] = {}

    def match(self, user: Entity | None, group: Entity | None, now: datetime) -> Outcome:
        """The rulesets that apply to a request naming ``user`` and/or ``group``."""
        if not self.rulesets:
            return self._nothing
        at = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        signature = (self._truths(user, "user", at), self._truths(group, "group", at))
        outcome = self._outcomes.get(signature)
        if outcome is None:
            if len(self._outcomes) >= MAX_OUTCOMES:
                self._outcomes.clear()
            outcome = self._outcomes[signature] = self._outcome(Facts(user, group, now))
        return outcome

    def _truths(self, entity: Entity | None, kind: str, now: datetime) -> object:
        """The truth of every term read on ``entity`` (None when the request does not
        name one: then the terms read a missing entity, always the same way)."""
        if entity is None:
            return None
        known = self._known.get((kind, entity.id))
        if known is None or (known.entity is not entity and known.entity != entity):
            known = self._learn(entity, kind)
        if not known.deadlines:
            return known.fields
        return (known.fields, tuple(d is not None and now <= d for d in known.deadlines))

    def _learn(self, entity: Entity, kind: str) -> _Known:
        # FieldTerm.test does not read the clock; joined-within terms become deadlines.
        fields = tuple(t.test(entity, _EPOCH) for t in self._fields[kind])
        seen = entity.first_seen
        start = None if seen is None else _utc(seen)
        deadlines = tuple(None if start is None else start + d for d in self._joined[kind])
        if len(self._known) >= MAX_ENTITIES:
            self._known.clear()
        known = self._known[(kind, entity.id)] = _Known(entity, fields, deadlines)
        return known

    def _outcome(self, facts: Facts) -> Outcome:
        named = {"request"}
        named.update(k for k, e in (("user", facts.user), ("group", facts.group)) if e is not None)
        applied = []
        for rp in self.rulesets:
            kinds = rp.ruleset.condition.subjects(facts)
            subjects = tuple(k for k in _KINDS if k in kinds and k in named)
            if subjects:
                applied.append((rp, subjects))
        return Outcome(tuple(applied), tuple(rp.ruleset.name for rp, _ in applied))

    def program(self, outcome: Outcome, model: str) -> Program:
        """The rules to run for ``outcome`` on a request for ``model``, in order."""
        found = outcome.programs.get(model)
        if found is not None:
            return found
        if len(outcome.programs) >= _MAX_MODELS:
            outcome.programs.clear()
        steps: list[Fire | Check] = []
        tests: dict[tuple[str, str], Check] = {}  # by (rule, subject kind)
        for rp, kinds in outcome.applied:
            for kind in kinds:
                for index, rule in enumerate(rp.rules):
                    if rule.name not in self.static:
                        key = (rule.name, kind)
                        test = tests[key].test if key in tests else len(tests)
                        check = Check(kind, rp.ruleset, rp.order, index, rule, test)
                        tests.setdefault(key, check)
                        steps.append(check)
                        continue
                    detail = self.static_detail(rule, model)
                    if detail is not None:
                        steps.append(self._fire(kind, rp, index, rule, detail))
        fires = tuple(step for step in steps if isinstance(step, Fire))
        firings = [step.firing for step in fires if not step.block]
        effects, reasons = combine(self.config, firings, model)
        built = outcome.programs[model] = Program(
            tuple(steps), effects, reasons, tuple(tests.values()), fires
        )
        return built

    def _fire(self, kind: str, rp: RulesetPlan, index: int, rule: RuleConfig, detail: str) -> Fire:
        rs = rp.ruleset
        firing = Firing(rs, rp.order, index, rule, "policy", detail, None)
        block = None
        if rule.action == "block":
            why = rule.message or detail
            message = f'blocked by ruleset "{rs.name}", rule "{rule.name}": {why}'
            block = Block(403, "blocked", message, None)
        head = f'rule "{rule.name}" of ruleset "{rs.name}" for '
        tail = f": {detail}: {self.effects[rule.name]}"
        return Fire(kind, f"{rs.name}/{rule.name}", firing, block, head, tail)

    def model_matches(self, glob: str, model: str) -> bool:
        key = (glob, model)
        hit = self._models.get(key)
        if hit is None:
            if len(self._models) >= _MAX_MODELS:
                self._models.clear()
            hit = self._models[key] = model_matches(glob, model)
        return hit

    def static_detail(self, rule: RuleConfig, model: str) -> str | None:
        """Why a rule in ``static`` fires for ``model``; None when it does not."""
        key = (rule.name, model)
        if key in self._details:
            return self._details[key]
        if len(self._details) >= _MAX_MODELS:
            self._details.clear()
        detail: str | None = "no trigger, always fires"
        if rule.model is not None:
            held = self.model_matches(rule.model, model)
            detail = f'model "{model}" matches "{rule.model}"' if held else None
        self._details[key] = detail
        return detail


class _Known(NamedTuple):
    """An entity's term truths that do not change with time, for the plan's life."""

    entity: Entity  # reused while the request's entity is this one or equal to it
    fields: tuple[bool, ...]
    deadlines: tuple[datetime | None, ...]  # joined-within terms hold until then


def _scope(term: Term) -> str | None:
    return term.field.scope if isinstance(term, FieldTerm) else term.scope


def _term_key(term: Term) -> Any:
    """Terms that test the same thing, however they were written."""
    if isinstance(term, FieldTerm):
        f = term.field
        return ("field", f.scope, f.path, term.op, term.values, term.want)
    return ("joined", term.scope, term.duration)


def plan(config: Config) -> PolicyPlan:
    """``config``'s plan, built on first use and kept on the config object itself (as
    ``functools.cached_property`` does: the frozen dataclass has a ``__dict__``)."""
    found = config.__dict__.get(_SLOT)
    if isinstance(found, PolicyPlan):
        return found
    built = PolicyPlan(config)
    config.__dict__[_SLOT] = built
    return built


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
