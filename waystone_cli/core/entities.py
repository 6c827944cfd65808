"""Users and groups as the policy engine and the reports see them.

An entity's metadata is the merge of what traffic sent (inline ``metadata`` in
``metadata.waystone``, merged key by key) and what the admin declared in the TOML;
the admin's value wins for the same key.  ``first_seen`` is when traffic first named
it, or the ``added`` date of a declared entity, whichever is earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from waystone_cli.core.config import GroupConfig, UserConfig

Kind = Literal["user", "group"]


@dataclass(frozen=True)
class Entity:
    kind: Kind
    id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    first_seen: datetime | None = None
    declared: bool = False
    credits_usd: float | None = None
    credits_window: str | None = None


def merge_metadata(seen: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """Traffic metadata overlaid by the admin's declared metadata (declared wins)."""
    merged = dict(seen)
    merged.update(declared)
    return merged


def build_entity(
    kind: Kind,
    ident: str,
    declared: UserConfig | GroupConfig | None,
    seen_metadata: Mapping[str, Any],
    seen_first: datetime | None,
    *,
    merge_seen: bool = True,
) -> Entity:
    """The entity from what traffic showed and what the admin declared (module docstring).

    With ``merge_seen`` false (``[server] request_metadata = "ignore"``) the metadata
    traffic sent is left out, including what was merged before the setting changed.
    """
    if not merge_seen:
        seen_metadata = {}
    first_seen = seen_first
    added = _parse_added(declared.added) if declared is not None and declared.added else None
    if added is not None and (first_seen is None or added < first_seen):
        first_seen = added
    credits = declared.credits if declared is not None else None
    return Entity(
        kind=kind,
        id=ident,
        metadata=merge_metadata(seen_metadata, declared.metadata if declared is not None else {}),
        first_seen=first_seen,
        declared=declared is not None,
        credits_usd=credits.usd if credits else None,
        credits_window=credits.window if credits else None,
    )


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_added(text: str) -> datetime | None:
    """``added`` as a time; the validator only checks that it is text or a date."""
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        return None
