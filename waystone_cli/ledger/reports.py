"""Placeholder: queries over usage reports (being written)."""

from __future__ import annotations

from typing import Any

QUERIES: dict[str, Any] = {}
