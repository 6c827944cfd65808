"""The range of a signed 64-bit integer, where counts are stored (counter buckets,
the ledger's BIGINT, OTLP's int64 attributes), and clamping a count to it."""

from __future__ import annotations

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def saturate(value: int) -> int:
    """``value`` clamped to the int64 range: a count too large to store is stored as the
    largest one, never an error."""
    return INT64_MAX if value > INT64_MAX else INT64_MIN if value < INT64_MIN else value
