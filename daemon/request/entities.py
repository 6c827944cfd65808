"""Entities seen in traffic, kept in memory for the request path.

Loaded from the ledger at start; every request that names a user or group merges its
inline metadata here (key by key) and records first-seen times and user→group links.
The ledger writer persists the same facts from each request's row, so after a restart
this store is rebuilt with the same content.  ``entity()`` overlays what the admin
declared in the TOML (declared metadata wins; credits come only from the TOML).  With
``[server] request_metadata = "ignore"`` requests reach this store without metadata
(``proxy.attach_identity``) and ``entity()`` leaves out what was merged before.

The same holds for one entity: ``daemon.request.eviction`` drops the least recently seen past a
bound, once the ledger holds their facts, and ``restore()`` puts one back from its
ledger row when it comes back.  Each table is kept in the order entities were last
seen, so the oldest come first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

from waystone_cli.core.config import Config, GroupConfig, UserConfig
from waystone_cli.core.entities import Entity, Kind, as_utc, build_entity
from waystone_cli.core.identity import EntityRef, Identity


@dataclass
class _Seen:
    first_seen: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    # The Entity last built, the declaration it read and whether it read the metadata
    # traffic sent: handed out again while none changed, so the policy engine's
    # per-entity caches see the same object.
    built: tuple[UserConfig | GroupConfig | None, bool, Entity] | None = None
    changes: int = 0  # metadata merges: an eviction keeps an entity changed since it chose


class Evictable(NamedTuple):
    kind: Kind
    id: str
    seen: _Seen
    changes: int


class EntityStore:
    def __init__(self) -> None:
        self._seen: dict[Kind, dict[str, _Seen]] = {"user": {}, "group": {}}

    def load(self, users: dict[str, Any], groups: dict[str, Any]) -> None:
        """Warm the store from ``ledger.entities.load_entities`` (its links are not
        kept: nothing on the request path reads them)."""
        for kind, rows in (("user", users), ("group", groups)):
            table = self._seen["user" if kind == "user" else "group"]
            for ident, row in rows.items():
                table[ident] = _Seen(as_utc(row.first_seen), dict(row.metadata))

    def has(self, kind: Kind, ident: str) -> bool:
        return ident in self._seen[kind]

    def restore(
        self, kind: Kind, ident: str, first_seen: datetime, metadata: dict[str, Any]
    ) -> None:
        """Put back an evicted entity from its ledger row (unless traffic named it since)."""
        self._seen[kind].setdefault(ident, _Seen(as_utc(first_seen), dict(metadata)))

    def evictable(self, keep: int) -> list[Evictable]:
        """Past ``keep`` entities of a kind, the least recently seen (a quarter more, so
        a sweep is not needed for every new entity)."""
        chosen = []
        for kind, table in self._seen.items():
            excess = len(table) - keep * 3 // 4 if len(table) > keep else 0
            for ident, seen in islice(table.items(), excess):
                chosen.append(Evictable(kind, ident, seen, seen.changes))
        return chosen

    def evict(self, chosen: list[Evictable]) -> list[tuple[Kind, str]]:
        """Drop the chosen entities whose metadata did not change since; their keys."""
        dropped = []
        for kind, ident, seen, changes in chosen:
            table = self._seen[kind]
            if table.get(ident) is seen and seen.changes == changes:
                del table[ident]
                dropped.append((kind, ident))
        return dropped

    def observe(
        self, identity: Identity, config: Config, now: datetime
    ) -> tuple[Entity | None, Entity | None]:
        """Record what a request says about its entities; return them for the policy."""
        user = self._touch("user", identity.user, now)
        group = self._touch("group", identity.group, now)
        return (
            self.entity("user", user, config) if user else None,
            self.entity("group", group, config) if group else None,
        )

    def _touch(self, kind: Kind, ref: EntityRef | None, now: datetime) -> str | None:
        if ref is None:
            return None
        table = self._seen[kind]
        seen = table.pop(ref.id, None)  # and in again: last seen comes last
        if seen is None:
            seen = _Seen(now)
        table[ref.id] = seen
        if ref.metadata and _changes(seen.metadata, ref.metadata):
            seen.metadata.update(ref.metadata)
            seen.built = None
            seen.changes += 1
        return ref.id

    def entity(self, kind: Kind, ident: str, config: Config) -> Entity:
        seen = self._seen[kind].get(ident)
        declared: UserConfig | GroupConfig | None = (
            config.users.get(ident) if kind == "user" else config.groups.get(ident)
        )
        merge = config.server.merges_request_metadata
        built = seen.built if seen is not None else None
        if built is not None and built[0] is declared and built[1] is merge:
            return built[2]
        entity = build_entity(
            kind,
            ident,
            declared,
            seen.metadata if seen else {},
            seen.first_seen if seen else None,
            merge_seen=merge,
        )
        if seen is not None:
            seen.built = (declared, merge, entity)
        return entity

    def count(self, kind: Kind) -> int:
        return len(self._seen[kind])


_MISSING = object()


def _changes(metadata: dict[str, Any], update: Mapping[str, Any]) -> bool:
    """Whether inline metadata changes anything (``1`` and ``true`` differ; a table or
    list counts as a change unless it is the same object)."""
    for key, new in update.items():
        old = metadata.get(key, _MISSING)
        if old is not new and (
            type(old) is not type(new) or type(new) not in _SCALARS or old != new
        ):
            return True
    return False


_SCALARS = (str, int, float, bool)
