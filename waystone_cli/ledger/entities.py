"""Users, groups and links seen in traffic: the writer's upserts and the queries over them.

The writer calls ``upsert_entities`` inside each batch's transaction.  Metadata sent
inline with requests merges into the stored metadata key by key (top-level keys; a new
value, even an object or null, replaces the old one), in the order the requests were
made.  ``first_seen`` only moves earlier and ``last_seen`` only later, so batches may
arrive in any order.  A link keeps the time it was first seen.

Query functions (``QUERIES``) return JSON-able data; times are ISO 8601 strings in UTC
without an offset, as stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import duckdb

from waystone_cli.core.errors import UsageError
from waystone_cli.core.records import RequestRecord

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


def upsert_entities(con: duckdb.DuckDBPyConnection, records: Iterable[RequestRecord]) -> None:
    """Record the batch's users, groups and links; the caller holds the transaction."""
    found = _collect(records)
    _upsert_kind(con, "users", found.users)
    _upsert_kind(con, "groups", found.groups)
    if found.links:
        pairs = list(found.links)
        con.execute(
            "MERGE INTO links AS e USING (SELECT UNNEST(?::VARCHAR[]) AS user_id, "
            "UNNEST(?::VARCHAR[]) AS group_id, UNNEST(?::TIMESTAMP[]) AS first_seen) AS v "
            "ON e.user_id = v.user_id AND e.group_id = v.group_id "
            "WHEN MATCHED AND v.first_seen < e.first_seen THEN UPDATE SET first_seen = v.first_seen "
            "WHEN NOT MATCHED THEN INSERT BY NAME",
            [[p[0] for p in pairs], [p[1] for p in pairs], list(found.links.values())],
        )


# MERGE rather than INSERT ... ON CONFLICT: about a third faster in DuckDB (bench/ledger_insert.py).
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


def _upsert_kind(con: duckdb.DuckDBPyConnection, table: str, seen: dict[str, _Seen]) -> None:
    if not seen:
        return
    con.execute(
        _UPSERT_ENTITY.format(table=table),
        [
            list(seen),
            [s.first for s in seen.values()],
            [s.last for s in seen.values()],
            [
                None
                if s.patch is None
                else json.dumps(s.patch, ensure_ascii=False, separators=(",", ":"))
                for s in seen.values()
            ],
        ],
    )


def _table(kind: str) -> str:
    table = _TABLES.get(kind)
    if table is None:
        raise UsageError(f"unknown entity kind {kind!r}: expected 'user' or 'group'")
    return table


def _links_by(con: duckdb.DuckDBPyConnection, kind: str, id_: str | None) -> dict[str, list[str]]:
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


def seen_entities(con: duckdb.DuckDBPyConnection, kind: str) -> list[dict[str, Any]]:
    """Every user (or group) seen in traffic, by id, with its links."""
    table = _table(kind)
    rows = con.execute(
        f"SELECT id, metadata, first_seen, last_seen FROM {table} ORDER BY id"
    ).fetchall()
    linked = _links_by(con, kind, None)
    return [_as_dict(kind, row, linked) for row in rows]


def seen_entity(con: duckdb.DuckDBPyConnection, kind: str, id: str) -> dict[str, Any] | None:
    """One user (or group) seen in traffic, or None if traffic never named it."""
    table = _table(kind)
    row = con.execute(
        f"SELECT id, metadata, first_seen, last_seen FROM {table} WHERE id = ?", [id]
    ).fetchone()
    if row is None:
        return None
    return _as_dict(kind, row, _links_by(con, kind, id))


def load_entities(
    con: duckdb.DuckDBPyConnection,
) -> tuple[dict[str, SeenEntity], dict[str, SeenEntity], set[tuple[str, str]]]:
    """Users, groups and (user, group) links seen in traffic, for the daemon's start."""
    found: list[dict[str, SeenEntity]] = []
    for table in ("users", "groups"):
        rows = con.execute(f"SELECT id, metadata, first_seen FROM {table}").fetchall()
        found.append(
            {id_: SeenEntity(id_, json.loads(meta or "{}"), first) for id_, meta, first in rows}
        )
    links = {(u, g) for u, g in con.execute("SELECT user_id, group_id FROM links").fetchall()}
    return found[0], found[1], links


QUERIES: dict[str, Callable[..., Any]] = {
    "seen_entities": seen_entities,
    "seen_entity": seen_entity,
}
