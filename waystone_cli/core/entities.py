"""Users and groups as the policy engine and the reports see them.

An entity's metadata is the merge of what traffic sent (inline ``metadata`` in
``metadata.waystone``, merged key by key) and what the admin declared in the TOML;
the admin's value wins for the same key.  ``first_seen`` is when traffic first named
it, or the ``added`` date of a declared entity, whichever is earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

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
