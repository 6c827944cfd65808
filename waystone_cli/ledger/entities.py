"""Users, groups and links seen in traffic: the writer's upserts and the queries over them.

Metadata sent inline with requests merges into the stored metadata key by key (top-level
keys; a new value, even an object or null, replaces the old one), in the order the
requests were made.  ``first_seen`` only moves earlier and ``last_seen`` only later, so
batches may arrive in any order.  A link keeps the time it was first seen.

``upsert_entities`` MERGEs every entity and link of the records (``/api/identify`` and
tests call it).  The writer instead keeps a ``KnownEntities``: the entities and links it
knows are in the ledger, with their times.  A batch then MERGEs only what is new, moves
``first_seen`` earlier (a drained spill) or carries a metadata patch other than the last
one the writer merged for that entity (clients often send the same metadata on every
request; merging it again changes nothing).  ``forget_metadata`` drops that memory when
something else may have written metadata (``LedgerWriter.run_in_db``).  A known entity seen
again only moves ``last_seen`` in memory, and those moves are written together in one
UPDATE per table at most once every ``refresh_s`` seconds (60), inside a batch or, when
no batch comes, by the writer on its own (``LedgerWriter``), and exactly at ``close()``.
So ``last_seen`` in the ledger lags an entity's latest request by at most about a minute
(after a SIGKILL it stays where the last refresh put it; the requests rows are exact).
A known link needs nothing.  Each MERGE costs milliseconds of CPU whatever its size,
which is what this saves.

The memory is bounded: past ``limit`` entries per table the oldest clean ones are
forgotten (they are MERGEd again when they come back), so 50,000 users cost about 15 MB.

Query functions (``QUERIES``) return JSON-able data; times are ISO 8601 strings in UTC
without an offset, as stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Literal

from waystone_cli.core.errors import UsageError
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.dialect import Connection, dialect_of

Kind = Literal["user", "group"]
_TABLES: dict[str, str] = {"user": "users", "group": "groups"}


@dataclass(frozen=True)
class SeenEntity:
    id: str
    metadata: dict[str, Any]
    first_seen: datetime


@dataclass
class _Seen:
    first: datetime
    last: datetime
    patch: dict[str, Any] | None = None


@dataclass
class _BatchEntities:
    users: dict[str, _Seen] = field(default_factory=dict)
    groups: dict[str, _Seen] = field(default_factory=dict)
    links: dict[tuple[str, str], datetime] = field(default_factory=dict)


def _collect(records: Iterable[RequestRecord]) -> _BatchEntities:
    found = _BatchEntities()
    # Requests are applied in time order so the latest metadata value wins.
    for r in sorted(records, key=lambda rec: rec.ts):
        if r.user_id:
            _note(found.users, r.user_id, r.ts, r.user_metadata)
        if r.group_id:
            _note(found.groups, r.group_id, r.ts, r.group_metadata)
        if r.user_id and r.group_id:
            found.links.setdefault((r.user_id, r.group_id), r.ts)
    return found


def _note(seen: dict[str, _Seen], id_: str, ts: datetime, patch: dict[str, Any] | None) -> None:
    entry = seen.get(id_)
    if entry is None:
        entry = seen[id_] = _Seen(first=ts, last=ts)
    else:
        entry.first = min(entry.first, ts)
        entry.last = max(entry.last, ts)
    if patch:
        entry.patch = {**(entry.patch or {}), **patch}


def upsert_entities(con: Connection, records: Iterable[RequestRecord]) -> None:
    """Record the batch's users, groups and links; the caller holds the transaction."""
    found = _collect(records)
    _upsert_kind(con, "users", found.users)
    _upsert_kind(con, "groups", found.groups)
    _merge_links(con, found.links)


def _merge_links(con: Connection, links: dict[tuple[str, str], datetime]) -> None:
    if not links:
        return
    pairs = sorted(links)
    sql = _LINKS_PG if dialect_of(con).postgres else _MERGE_LINKS
    con.execute(sql, [[p[0] for p in pairs], [p[1] for p in pairs], [links[p] for p in pairs]])


_MERGE_LINKS = (
    "MERGE INTO links AS e USING (SELECT UNNEST(?::VARCHAR[]) AS user_id, "
    "UNNEST(?::VARCHAR[]) AS group_id, UNNEST(?::TIMESTAMP[]) AS first_seen) AS v "
    "ON e.user_id = v.user_id AND e.group_id = v.group_id "
    "WHEN MATCHED AND v.first_seen < e.first_seen THEN UPDATE SET first_seen = v.first_seen "
    "WHEN NOT MATCHED THEN INSERT BY NAME"
)
# Postgres: INSERT … ON CONFLICT, which two instances may run on the same keys at once
# (a MERGE there may fail with a unique violation when both insert); keys sorted, so
# their row locks are taken in one order.
_LINKS_PG = """
INSERT INTO links AS e (user_id, group_id, first_seen)
SELECT * FROM unnest(?::VARCHAR[], ?::VARCHAR[], ?::TIMESTAMP[])
ON CONFLICT (user_id, group_id) DO UPDATE SET first_seen = least(e.first_seen, EXCLUDED.first_seen)
"""


# MERGE rather than INSERT ... ON CONFLICT: faster in DuckDB.
# Metadata merges top-level keys in SQL: MAP(VARCHAR, JSON) keeps each value's JSON intact
# and map_concat lets the later map win.
_UPSERT_ENTITY = """
MERGE INTO {table} AS e
USING (SELECT UNNEST(?::VARCHAR[]) AS id, UNNEST(?::TIMESTAMP[]) AS first_seen,
              UNNEST(?::TIMESTAMP[]) AS last_seen, UNNEST(?::JSON[]) AS patch) AS v
ON e.id = v.id
WHEN MATCHED THEN UPDATE SET
    first_seen = least(e.first_seen, v.first_seen),
    last_seen = greatest(e.last_seen, v.last_seen),
    metadata = CASE WHEN v.patch IS NULL THEN e.metadata ELSE to_json(map_concat(
        CAST(e.metadata AS MAP(VARCHAR, JSON)), CAST(v.patch AS MAP(VARCHAR, JSON)))) END
WHEN NOT MATCHED THEN INSERT (id, first_seen, last_seen, metadata)
    VALUES (v.id, v.first_seen, v.last_seen, COALESCE(v.patch, '{{}}'))
"""


# Postgres: the top-level keys of the patch win (jsonb's ``||``); no patch is ``{}``.
_UPSERT_ENTITY_PG = """
INSERT INTO {table} AS e (id, first_seen, last_seen, metadata)
SELECT id, first_seen, last_seen, COALESCE(patch, '{{}}')
FROM unnest(?::VARCHAR[], ?::TIMESTAMP[], ?::TIMESTAMP[], ?::JSON[])
     AS v(id, first_seen, last_seen, patch)
ON CONFLICT (id) DO UPDATE SET
    first_seen = least(e.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(e.last_seen, EXCLUDED.last_seen),
    metadata = (e.metadata::jsonb || EXCLUDED.metadata::jsonb)::json
"""


def _patch_json(patch: dict[str, Any]) -> str:
    return json.dumps(patch, ensure_ascii=False, separators=(",", ":"))


def _upsert_kind(con: Connection, table: str, seen: dict[str, _Seen]) -> None:
    if not seen:
        return
    ids = sorted(seen)
    patches = [seen[i].patch for i in ids]
    sql = _UPSERT_ENTITY_PG if dialect_of(con).postgres else _UPSERT_ENTITY
    con.execute(
        sql.format(table=table),
        [
            ids,
            [seen[i].first for i in ids],
            [seen[i].last for i in ids],
            [None if patch is None else _patch_json(patch) for patch in patches],
        ],
    )


_REFRESH = """
UPDATE {table} AS e SET first_seen = least(e.first_seen, v.first_seen),
    last_seen = greatest(e.last_seen, v.last_seen)
FROM (SELECT UNNEST(?::VARCHAR[]) AS id, UNNEST(?::TIMESTAMP[]) AS first_seen,
             UNNEST(?::TIMESTAMP[]) AS last_seen) AS v
WHERE e.id = v.id
"""

Times = tuple[datetime, datetime]  # (first_seen, last_seen)
_KINDS = ("users", "groups")


@dataclass
class EntityPlan:
    """What one batch writes for its entities, and what the writer knows once it commits."""

    merge: dict[str, dict[str, _Seen]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    links: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # Known entities whose times moved: written now only when ``refreshing``.
    refresh: dict[str, dict[str, Times]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    # The times of the batch's entities once it commits (merged or moved).
    times: dict[str, dict[str, Times]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    # The hash of each entity's metadata patch in this batch.
    patches: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in _KINDS})
    refreshing: bool = False

    @property
    def empty(self) -> bool:
        return not (self.links or any(self.merge.values()) or any(self.refresh.values()))


class KnownEntities:
    """The writer's bounded memory of entities and links in the ledger (module docstring)."""

    def __init__(
        self,
        *,
        limit: int = 50_000,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._times: dict[str, dict[str, Times]] = {k: {} for k in _KINDS}
        # Ids whose times in memory are ahead of the ledger's.
        self._dirty: dict[str, set[str]] = {k: set() for k in _KINDS}
        self._links: dict[tuple[str, str], datetime] = {}
        # The hash of the last metadata patch merged, per entity.
        self._patches: dict[str, dict[str, int]] = {k: {} for k in _KINDS}
        self._limit = limit
        self._refresh_s = refresh_s
        self._clock = clock
        self._refreshed_at = clock()

    def load(self, con: Connection) -> None:
        """Start from the ledger: the ``limit`` most recently seen of each table."""
        for table in _KINDS:
            rows = con.execute(
                f"SELECT id, first_seen, last_seen FROM (SELECT * FROM {table} "
                "ORDER BY last_seen DESC LIMIT ?) AS recent ORDER BY last_seen",
                [self._limit],
            ).fetchall()
            self._times[table] = {id_: (first, last) for id_, first, last in rows}
        rows = con.execute(
            "SELECT user_id, group_id, first_seen FROM links ORDER BY first_seen DESC LIMIT ?",
            [self._limit],
        ).fetchall()
        self._links = {(u, g): first for u, g, first in rows}

    def __len__(self) -> int:
        return sum(map(len, self._times.values())) + len(self._links)

    def due_in(self) -> float | None:
        """Seconds until moved times should be written; None when none are pending."""
        if not any(self._dirty.values()):
            return None
        return max(0.0, self._refreshed_at + self._refresh_s - self._clock())

    def forget_metadata(self) -> None:
        """Merge every patch again from now on: the stored metadata may have changed."""
        self._patches = {k: {} for k in _KINDS}

    def postpone(self) -> None:
        """Try the pending times again a refresh period from now (their write failed)."""
        self._refreshed_at = self._clock()

    def plan(self, records: Iterable[RequestRecord], *, force: bool = False) -> EntityPlan:
        """What to write for ``records``; ``force`` writes every pending time (at close)."""
        found = _collect(records)
        plan = EntityPlan()
        for table, seen in (("users", found.users), ("groups", found.groups)):
            self._plan_kind(plan, table, seen)
        for pair, first in found.links.items():
            old = self._links.get(pair)
            if old is None or first < old:
                plan.links[pair] = first
        plan.refreshing = force or self._clock() >= self._refreshed_at + self._refresh_s
        if plan.refreshing:
            for table in _KINDS:
                moved, times, merged = plan.refresh[table], self._times[table], plan.merge[table]
                moved.update((k, times[k]) for k in self._dirty[table] if k not in merged)
                moved.update((k, t) for k, t in plan.times[table].items() if k not in merged)
        return plan

    def _plan_kind(self, plan: EntityPlan, table: str, seen: dict[str, _Seen]) -> None:
        known, merge, times = self._times[table], plan.merge[table], plan.times[table]
        merged, patches = self._patches[table], plan.patches[table]
        for id_, s in seen.items():
            old = known.get(id_)
            if s.patch is not None:
                patches[id_] = hash(_patch_json(s.patch))
                if merged.get(id_) == patches[id_]:
                    s.patch = None  # the ledger holds it already
            if old is None:
                merge[id_] = s
                times[id_] = (s.first, s.last)
            elif s.patch is not None or s.first < old[0]:
                # The MERGE also writes the times held in memory, so the entity is clean.
                first, last = min(old[0], s.first), max(old[1], s.last)
                merge[id_] = _Seen(first, last, s.patch)
                times[id_] = (first, last)
            elif s.last > old[1]:
                times[id_] = (old[0], s.last)

    def settle(self, plan: EntityPlan) -> None:
        """Remember what ``plan`` wrote; call it once its transaction has committed."""
        for table in _KINDS:
            known, dirty, merged = self._times[table], self._dirty[table], plan.merge[table]
            known.update(plan.times[table])
            self._patches[table].update(plan.patches[table])
            if plan.refreshing:
                dirty.clear()
            else:
                dirty.difference_update(merged)
                dirty.update(k for k in plan.times[table] if k not in merged)
            self._evict(known, dirty, self._patches[table])
        self._links.update(plan.links)
        if len(self._links) > self._limit:
            for pair in list(islice(self._links, len(self._links) - self._limit * 3 // 4)):
                del self._links[pair]
        if plan.refreshing:
            self._refreshed_at = self._clock()

    def _evict(self, known: dict[str, Times], dirty: set[str], patches: dict[str, int]) -> None:
        """Forget the oldest entries past the limit, keeping those with unwritten times."""
        if len(known) <= self._limit:
            return
        excess = len(known) - self._limit * 3 // 4
        drop: list[str] = []
        for id_ in known:
            if len(drop) == excess:
                break
            if id_ not in dirty:
                drop.append(id_)
        for id_ in drop:
            del known[id_]
            patches.pop(id_, None)


def write_plan(con: Connection, plan: EntityPlan) -> None:
    """Run ``plan``'s statements; the caller holds the transaction."""
    for table in _KINDS:
        _upsert_kind(con, table, plan.merge[table])
        moved = plan.refresh[table]
        if moved:
            con.execute(
                _REFRESH.format(table=table),
                [list(moved), [t[0] for t in moved.values()], [t[1] for t in moved.values()]],
            )
    _merge_links(con, plan.links)


def _table(kind: str) -> str:
    table = _TABLES.get(kind)
    if table is None:
        raise UsageError(f"unknown entity kind {kind!r}: expected 'user' or 'group'")
    return table


def _links_by(con: Connection, kind: str, id_: str | None) -> dict[str, list[str]]:
    """For users: user id -> its group ids; for groups: group id -> its member ids."""
    own, other = ("user_id", "group_id") if kind == "user" else ("group_id", "user_id")
    where = f"WHERE {own} = ?" if id_ is not None else ""
    rows = con.execute(
        f"SELECT {own}, {other} FROM links {where} ORDER BY {own}, {other}",
        [id_] if id_ is not None else [],
    ).fetchall()
    linked: dict[str, list[str]] = {}
    for owner, target in rows:
        linked.setdefault(owner, []).append(target)
    return linked


def _as_dict(kind: str, row: tuple[Any, ...], linked: dict[str, list[str]]) -> dict[str, Any]:
    id_, metadata, first_seen, last_seen = row
    return {
        "id": id_,
        "metadata": json.loads(metadata or "{}"),
        "first_seen": first_seen.isoformat(),
        "last_seen": last_seen.isoformat(),
        ("groups" if kind == "user" else "members"): linked.get(id_, []),
    }


def seen_entities(con: Connection, kind: str) -> list[dict[str, Any]]:
    """Every user (or group) seen in traffic, by id, with its links."""
    table = _table(kind)
    rows = con.execute(
        f"SELECT id, metadata, first_seen, last_seen FROM {table} ORDER BY id"
    ).fetchall()
    linked = _links_by(con, kind, None)
    return [_as_dict(kind, row, linked) for row in rows]


def seen_entity(con: Connection, kind: str, id: str) -> dict[str, Any] | None:
    """One user (or group) seen in traffic, or None if traffic never named it."""
    table = _table(kind)
    row = con.execute(
        f"SELECT id, metadata, first_seen, last_seen FROM {table} WHERE id = ?", [id]
    ).fetchone()
    if row is None:
        return None
    return _as_dict(kind, row, _links_by(con, kind, id))


def load_entities(
    con: Connection,
) -> tuple[dict[str, SeenEntity], dict[str, SeenEntity], set[tuple[str, str]]]:
    """Users, groups and (user, group) links seen in traffic, for the daemon's start."""
    found: list[dict[str, SeenEntity]] = []
    for table in ("users", "groups"):
        # Least recently seen first: the daemon's store keeps that order.
        rows = con.execute(
            f"SELECT id, metadata, first_seen FROM {table} ORDER BY last_seen"
        ).fetchall()
        found.append({row[0]: _seen_entity(row) for row in rows})
    links = {(u, g) for u, g in con.execute("SELECT user_id, group_id FROM links").fetchall()}
    return found[0], found[1], links


def load_entity(con: Connection, kind: str, id_: str) -> SeenEntity | None:
    """One user (or group) as ``load_entities`` reads it: an evicted one coming back."""
    row = con.execute(
        f"SELECT id, metadata, first_seen FROM {_table(kind)} WHERE id = ?", [id_]
    ).fetchone()
    return None if row is None else _seen_entity(row)


def _seen_entity(row: tuple[Any, ...]) -> SeenEntity:
    id_, metadata, first_seen = row
    return SeenEntity(id_, json.loads(metadata or "{}"), first_seen)


QUERIES: dict[str, Callable[..., Any]] = {
    "seen_entities": seen_entities,
    "seen_entity": seen_entity,
}
