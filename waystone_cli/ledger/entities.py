"""Placeholder: queries over entities seen in traffic (being written)."""

from __future__ import annotations

from typing import Any

QUERIES: dict[str, Any] = {}
