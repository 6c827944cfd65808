"""Users and groups as ``waystone user list`` and ``show`` list them: declared and seen, merged.

The ones the admin declares are in the TOML, the ones traffic named are in the ledger.  A
row merges both the way the gateway does (``core.entities.build_entity``: declared metadata
wins key by key, ``first_seen`` is the earlier of ``added`` and the first request) and
marks itself ``declared`` and/or ``seen``.  Rows are plain JSON-able dicts, so ``--json``
prints them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from waystone_cli.core.entities import Entity, Kind, build_entity
from waystone_cli.core.errors import UsageError

if TYPE_CHECKING:
    from waystone_cli.core.config import GroupConfig, UserConfig


def entity_rows(
    kind: Kind,
    declared: Mapping[str, Any],
    seen: Sequence[Mapping[str, Any]],
    where: str | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per entity, declared or seen, sorted by id; with ``where``, only the
    entities that ruleset condition selects at ``now``."""
    condition = None if where is None else _condition(where)
    moment = now or datetime.now(UTC)
    seen_by_id = {s["id"]: s for s in seen}
    rows = []
    for ident in sorted(set(declared) | set(seen_by_id)):
        decl, traffic = declared.get(ident), seen_by_id.get(ident) or {}
        entity = build_entity(
            kind,
            ident,
            decl,
            traffic.get("metadata") or {},
            _instant(traffic.get("first_seen")),
        )
        if condition is None or condition.matches(entity, moment):
            rows.append(_row(entity, decl, traffic))
    return rows


def member_rows(
    group: str, declared_users: Mapping[str, Any], seen_members: Sequence[str]
) -> list[dict[str, Any]]:
    declared = {u for u, cfg in declared_users.items() if group in cfg.groups}
    seen = set(seen_members)
    return [
        {"id": user, "declared": user in declared, "seen": user in seen}
        for user in sorted(declared | seen)
    ]


def _condition(where: str) -> Any:
    from waystone_cli.core.conditions import ConditionError, parse_condition

    try:
        return parse_condition(where)
    except ConditionError as err:
        raise UsageError(f"--where: {err}") from err


def _row(
    entity: Entity, decl: UserConfig | GroupConfig | None, seen: Mapping[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": entity.id, "metadata": dict(entity.metadata)}
    if entity.kind == "user":
        declared_groups = list(getattr(decl, "groups", ()))
        extra = [g for g in seen.get("groups") or [] if g not in declared_groups]
        row["groups"] = declared_groups + sorted(extra)
    has_credits = entity.credits_usd is not None
    row["credits"] = (
        {"usd": entity.credits_usd, "window": entity.credits_window} if has_credits else None
    )
    row["declared"] = entity.declared
    row["seen"] = bool(seen)
    row["first_seen"] = entity.first_seen.isoformat() if entity.first_seen else None
    last = _instant(seen.get("last_seen"))
    row["last_seen"] = last.isoformat() if last else None
    return row


def _instant(value: Any) -> datetime | None:
    """A time from the ledger (naive UTC, or its text), as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) and isinstance(value, date):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
