"""A config's policy compiled once, and which rulesets match whom.

``compile_plan(config)`` builds a ``PolicyPlan``: every ruleset in TOML order with its
rules resolved, and the terms their conditions read.  The daemon's config snapshot holds
it, so a plan lives exactly as long as its config and a reload starts a fresh one.

``PolicyPlan.match()`` finds which rulesets apply to a request, and to whom.  A
condition's verdict depends only on which entities the request names and on the truth
of its terms (``tier = free``, ``user.joined within 30d``, ...), each read once on its
scope's entity or, unscoped, on each named entity.  So each distinct term of the config
is tested once per request, and the tuple of those truths (the signature) keys the
outcome: 10,000 users who differ in a handful of values share a handful of outcomes, and
a user seen for the first time costs the term tests, not every condition.  These two
tables are the plan's only state, a cache emptied when it reaches its bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from waystone_cli.core.condition_tree import Facts, FieldTerm, JoinedWithin
from waystone_cli.core.config import Config, RuleConfig, RulesetConfig
from waystone_cli.core.entities import Entity

MAX_OUTCOMES = 10_000
MAX_ENTITIES = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KINDS = ("user", "group", "request")

Term = FieldTerm | JoinedWithin


@dataclass(frozen=True, eq=False)
class RulesetPlan:
    order: int  # position among all rulesets in the TOML
    ruleset: RulesetConfig
    rules: tuple[RuleConfig, ...]


# The rulesets that apply to a request, each with the subject kinds it applies to.
Outcome = Mapping[RulesetPlan, tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class PolicyPlan:
    """One config's rulesets, compiled (see the module docstring)."""

    rulesets: tuple[RulesetPlan, ...]  # every ruleset, enabled or not, in TOML order
    enabled: tuple[RulesetPlan, ...]
    fields: Mapping[str, tuple[FieldTerm, ...]]  # the terms read on a user, on a group
    joined: Mapping[str, tuple[timedelta, ...]]  # "joined within" terms, as durations
    _outcomes: dict[object, Outcome] = field(default_factory=dict, repr=False)
    _known: dict[tuple[str, str], _Known] = field(default_factory=dict, repr=False)

    def match(self, user: Entity | None, group: Entity | None, now: datetime) -> Outcome:
        """The rulesets that apply to a request naming ``user`` and/or ``group``."""
        if not self.enabled:
            return {}
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
        fields = tuple(t.test(entity, _EPOCH) for t in self.fields[kind])
        seen = entity.first_seen
        start = None if seen is None else _utc(seen)
        deadlines = tuple(None if start is None else start + d for d in self.joined[kind])
        if len(self._known) >= MAX_ENTITIES:
            self._known.clear()
        known = self._known[(kind, entity.id)] = _Known(entity, fields, deadlines)
        return known

    def _outcome(self, facts: Facts) -> Outcome:
        named = {"request"}
        named.update(k for k, e in (("user", facts.user), ("group", facts.group)) if e is not None)
        applied = {}
        for rp in self.enabled:
            kinds = rp.ruleset.condition.subjects(facts)
            subjects = tuple(k for k in _KINDS if k in kinds and k in named)
            if subjects:
                applied[rp] = subjects
        return applied


class _Known(NamedTuple):
    """An entity's term truths that do not change with time, for the plan's life."""

    entity: Entity  # reused while the request's entity is this one or equal to it
    fields: tuple[bool, ...]
    deadlines: tuple[datetime | None, ...]  # joined-within terms hold until then


def compile_plan(config: Config) -> PolicyPlan:
    """``config``'s rulesets with their rules resolved and the terms they read."""
    rulesets = tuple(
        RulesetPlan(order, rs, tuple(config.rules[name] for name in rs.rules))
        for order, rs in enumerate(config.rulesets.values())
    )
    enabled = tuple(rp for rp in rulesets if rp.ruleset.enabled)
    terms: dict[Any, Term] = {}
    for rp in enabled:
        for term in rp.ruleset.condition.terms():
            terms.setdefault(_term_key(term), term)
    # What an entity named as the user (or the group) is tested on: the terms scoped to
    # it and the unscoped ones.
    scoped = {kind: [t for t in terms.values() if _scope(t) in (kind, None)] for kind in _KINDS}
    return PolicyPlan(
        rulesets,
        enabled,
        fields={k: tuple(t for t in ts if isinstance(t, FieldTerm)) for k, ts in scoped.items()},
        joined={
            k: tuple(t.duration for t in ts if isinstance(t, JoinedWithin))
            for k, ts in scoped.items()
        },
    )


def _scope(term: Term) -> str | None:
    return term.field.scope if isinstance(term, FieldTerm) else term.scope


def _term_key(term: Term) -> Any:
    """Terms that test the same thing, however they were written."""
    if isinstance(term, FieldTerm):
        f = term.field
        return ("field", f.scope, f.path, term.op, term.values, term.want)
    return ("joined", term.scope, term.duration)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
