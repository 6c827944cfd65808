"""The parsed condition tree and how it is evaluated (SPEC §6).

``conditions.py`` parses the text into these nodes; this module holds the semantics.

Values: ``=`` compares as text.  A metadata value becomes text as JSON would print it
(``True`` is ``"true"``, ``3.0`` is ``"3"``, dates by isoformat); the parser lets an unquoted
number also match its canonical form, so ``n = 3.0`` matches 3 and ``"3"``.  Truthy is a
non-empty string (any, including ``"false"``: SPEC §6 says so), a non-zero number or ``true``;
falsy is ``0``, ``""`` or ``false``; a missing field (or null, a list, a table) is neither.
``!=`` holds when the field is missing or different.  ``exists`` means the key is present.
``joined within D`` holds when the entity has a first-seen time and ``now - first_seen <= D``.
A dotted field path reads nested metadata (a literal dotted key wins); the field ``id`` reads
the entity's id unless its metadata has an ``id`` key.

Subjects (whom the ruleset's rules act on):

- A condition with an UNSCOPED entity term (a bare FIELD, or ``joined within``) is evaluated
  once per entity the request names, that entity being the candidate: unscoped terms read the
  candidate, scoped terms read their scope.  The subjects are the candidates where it holds.
- Otherwise (only scoped terms, ``always``, ``has group``) it is evaluated once.  If it holds,
  the subjects are the scopes it references (``user.`` → user; ``group.`` or ``has group`` →
  group) that the request names; when that leaves none (``always``, ``not has group``), every
  named entity; when the request names no entity at all, ``{"request"}``.
- A scoped term whose scope the request does not name reads a missing field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from waystone_cli.core.entities import Entity

SCOPES = ("user", "group")


@dataclass(frozen=True)
class Facts:
    """What a condition reads about one request."""

    user: Entity | None
    group: Entity | None
    now: datetime


def as_text(value: Any) -> str | None:
    """A scalar as ``=`` sees it; None when it has no text form (null, list, table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return None


def truth(value: Any) -> bool | None:
    """True for truthy, False for falsy, None for neither (SPEC §6)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value != ""
    if isinstance(value, datetime | date | time):
        return True
    return None


@dataclass(frozen=True)
class _Ctx:
    facts: Facts
    candidate: Entity | None

    def entity(self, scope: str | None) -> Entity | None:
        if scope is None:
            return self.candidate
        return self.facts.user if scope == "user" else self.facts.group


class Node(Protocol):
    def holds(self, ctx: _Ctx) -> bool: ...
    def reasons(self, ctx: _Ctx) -> list[str]: ...
    def refs(self) -> frozenset[str]: ...  # scopes read; "" marks an unscoped entity term
    def grouped(self) -> str: ...


@dataclass(frozen=True)
class Field:
    scope: str | None
    path: tuple[str, ...]
    dotted: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dotted", ".".join(self.path))

    def lookup(self, ctx: _Ctx) -> tuple[bool, Any]:
        """(present, value) of the field on the entity it reads."""
        return self.read(ctx.entity(self.scope))

    def read(self, entity: Entity | None) -> tuple[bool, Any]:
        """(present, value) of the field on ``entity``."""
        if entity is None:
            return False, None
        meta: Any = entity.metadata
        dotted = self.dotted
        if dotted in meta:
            return True, meta[dotted]
        if self.path == ("id",):
            return True, entity.id
        for key in self.path:
            if not isinstance(meta, Mapping) or key not in meta:
                return False, None
            meta = meta[key]
        return True, meta


@dataclass(frozen=True)
class Leaf:
    """Shared by the terms: the source text they came from, for explanations."""

    text: str

    def grouped(self) -> str:
        return self.text


@dataclass(frozen=True)
class Always(Leaf):
    def holds(self, ctx: _Ctx) -> bool:
        return True

    def reasons(self, ctx: _Ctx) -> list[str]:
        return [f"{self.text}: always holds"]

    def refs(self) -> frozenset[str]:
        return frozenset()


@dataclass(frozen=True)
class HasGroup(Leaf):
    def holds(self, ctx: _Ctx) -> bool:
        return ctx.facts.group is not None

    def reasons(self, ctx: _Ctx) -> list[str]:
        group = ctx.facts.group
        named = f"names group {group.id}" if group else "names no group"
        return [f"{self.text}: the request {named}"]

    def refs(self) -> frozenset[str]:
        return frozenset({"group"})


@dataclass(frozen=True)
class FieldTerm(Leaf):
    """``=``, ``!=``, ``is true``, ``is false`` and ``exists`` on one field."""

    field: Field
    op: str  # "=", "!=", "is", "exists"
    values: frozenset[str] = frozenset()  # the texts "=" accepts
    want: bool = True  # for "is"

    def holds(self, ctx: _Ctx) -> bool:
        return self.test(ctx.entity(self.field.scope), ctx.facts.now)

    def test(self, entity: Entity | None, now: datetime) -> bool:
        """Whether the term holds when its field is read on ``entity``."""
        present, value = self.field.read(entity)
        if self.op == "exists":
            return present
        if self.op == "is":
            return present and truth(value) is self.want
        equal = present and as_text(value) in self.values
        return equal if self.op == "=" else not equal

    def reasons(self, ctx: _Ctx) -> list[str]:
        present, value = self.field.lookup(ctx)
        verdict = "holds" if self.holds(ctx) else "fails"
        if not present:
            return [f"{self.text}: missing, {verdict}"]
        text = as_text(value)
        shown = f'"{text}"' if text is not None else type(value).__name__
        if self.op == "exists":
            return [f"{self.text}: present, {verdict}"]
        if self.op == "is":
            kind = {True: "truthy", False: "falsy", None: "neither true nor false"}[truth(value)]
            return [f"{self.text}: {shown} is {kind}, {verdict}"]
        same = "matches" if text in self.values else "differs"
        return [f"{self.text}: {shown} {same}, {verdict}"]

    def refs(self) -> frozenset[str]:
        return frozenset({self.field.scope or ""})


@dataclass(frozen=True)
class JoinedWithin(Leaf):
    scope: str | None
    duration: timedelta

    def _age(self, ctx: _Ctx) -> timedelta | None:
        entity = ctx.entity(self.scope)
        if entity is None or entity.first_seen is None:
            return None
        return _utc(ctx.facts.now) - _utc(entity.first_seen)

    def holds(self, ctx: _Ctx) -> bool:
        return self.test(ctx.entity(self.scope), ctx.facts.now)

    def test(self, entity: Entity | None, now: datetime) -> bool:
        """Whether ``entity`` joined within the duration before ``now``."""
        if entity is None or entity.first_seen is None:
            return False
        return _utc(now) - _utc(entity.first_seen) <= self.duration

    def reasons(self, ctx: _Ctx) -> list[str]:
        entity = ctx.entity(self.scope)
        age = self._age(ctx)
        verdict = "holds" if self.holds(ctx) else "fails"
        if entity is None:
            return [f"{self.text}: no {self.scope or 'entity'} named, fails"]
        if age is None:
            return [f"{self.text}: {entity.kind} {entity.id} has no first-seen time, fails"]
        seen = f"{_utc(entity.first_seen or ctx.facts.now):%Y-%m-%d %H:%M} UTC"
        days = f"{age.total_seconds() / 86400:.1f} days ago"
        return [f"{self.text}: {entity.kind} {entity.id} first seen {seen}, {days}, {verdict}"]

    def refs(self) -> frozenset[str]:
        return frozenset({self.scope or ""})


@dataclass(frozen=True)
class Not:
    child: Node

    def holds(self, ctx: _Ctx) -> bool:
        return not self.child.holds(ctx)

    def reasons(self, ctx: _Ctx) -> list[str]:
        return self.child.reasons(ctx)

    def refs(self) -> frozenset[str]:
        return self.child.refs()

    def grouped(self) -> str:
        return f"not {self.child.grouped()}"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    children: tuple[Node, ...]

    def holds(self, ctx: _Ctx) -> bool:
        test = all if self.op == "and" else any
        return test(child.holds(ctx) for child in self.children)

    def reasons(self, ctx: _Ctx) -> list[str]:
        return [line for child in self.children for line in child.reasons(ctx)]

    def refs(self) -> frozenset[str]:
        return frozenset().union(*(child.refs() for child in self.children))

    def grouped(self) -> str:
        return "(" + f" {self.op} ".join(child.grouped() for child in self.children) + ")"


@dataclass(frozen=True)
class Condition:
    """A parsed condition: ``subjects`` for the policy engine, ``explain`` for people."""

    text: str
    root: Node
    # Derived once from the tree: the policy engine asks for them on every request.
    refs: frozenset[str] = field(init=False, compare=False, repr=False)
    per_candidate: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        refs = self.root.refs()
        object.__setattr__(self, "refs", refs)
        object.__setattr__(self, "per_candidate", "" in refs)

    def subjects(self, facts: Facts) -> frozenset[str]:
        """The subjects the ruleset applies to: a subset of {"user", "group"}, or
        {"request"} when it matches a request that names no entity; empty = no match."""
        named = _named(facts)
        if self.per_candidate:
            return frozenset(k for k, e in named.items() if self.root.holds(_Ctx(facts, e)))
        if not self.root.holds(_Ctx(facts, None)):
            return frozenset()
        if not named:
            return _REQUEST
        return frozenset(self.refs & named.keys()) or frozenset(named)

    def terms(self) -> tuple[FieldTerm | JoinedWithin, ...]:
        """Its terms that read an entity: what its verdict depends on, besides which
        entities the request names (for the policy engine's caches)."""
        return tuple(_terms(self.root))

    def matches(self, entity: Entity, now: datetime) -> bool:
        """Whether the condition selects this one entity (``user list --where``)."""
        facts = Facts(
            user=entity if entity.kind == "user" else None,
            group=entity if entity.kind == "group" else None,
            now=now,
        )
        return entity.kind in self.subjects(facts)

    def explain(self, facts: Facts) -> list[str]:
        """One line per term with its value and outcome, then the verdict."""
        named = _named(facts)
        lines: list[str] = []
        if self.per_candidate:
            for kind, entity in named.items():
                ctx = _Ctx(facts, entity)
                lines += [f"as {kind} {entity.id}: {r}" for r in self.root.reasons(ctx)]
            if not named:
                lines.append("the request names no user or group to test")
        else:
            lines += self.root.reasons(_Ctx(facts, None))
        lines.append(_verdict(self.subjects(facts), named))
        return lines

    def grouped(self) -> str:
        """The condition with its grouping made explicit (shows precedence)."""
        return self.root.grouped()


def _utc(moment: datetime) -> datetime:
    """Naive times are taken as UTC, as the ledger stores them."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_REQUEST = frozenset({"request"})


def _terms(node: Node) -> Iterator[FieldTerm | JoinedWithin]:
    if isinstance(node, FieldTerm | JoinedWithin):
        yield node
    elif isinstance(node, Not):
        yield from _terms(node.child)
    elif isinstance(node, BoolOp):
        for child in node.children:
            yield from _terms(child)


def _named(facts: Facts) -> dict[str, Entity]:
    return {k: e for k, e in (("user", facts.user), ("group", facts.group)) if e is not None}


def _verdict(subjects: frozenset[str], named: Mapping[str, Entity]) -> str:
    if not subjects:
        return "no match"
    if subjects == {"request"}:
        return "matches the request (it names no user or group)"
    parts = [f"{kind} {named[kind].id}" for kind in SCOPES if kind in subjects]
    return "applies to " + " and ".join(parts)
