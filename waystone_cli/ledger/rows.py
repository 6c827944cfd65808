"""The ledger's edge: which rows it can store, and how a batch with one it cannot is written.

A row that cannot be stored must never hold back the others.  ``row_problem`` checks a
row against the columns of ``requests`` before the database sees it: counts within
``BIGINT`` (``INTEGER`` for status and retention), the cost within ``DECIMAL(18, 10)``,
the right type in every column; a string that is not valid Unicode (a lone surrogate)
is the only value it mends, by replacing what cannot be encoded.  ``insert_isolating``
then writes the rows that pass; if the database still refuses the batch for a reason
that lies in its rows (a conversion, a constraint), the batch is split in halves until
the refused row stands alone, and only that row is set aside.  An error that says the
database cannot take anything (disk full, folder unwritable, a lock) is not a row's
fault: it propagates, and the writer keeps the whole batch for a retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import duckdb

from waystone_cli.core.records import RequestRecord

BIGINT = (-(2**63), 2**63 - 1)
INTEGER = (-(2**31), 2**31 - 1)
# DECIMAL(18, 10) holds eight digits before the point.
MAX_COST = Decimal(10) ** 8

_BIGINTS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "audio_tokens")
_REQUIRED_TEXT = ("id", "route", "outcome")
_TEXT = ("user_id", "group_id", "provider", "requested_model", "model", "error")
_LISTS = ("rulesets", "rules", "datasets")
_FLAGS = ("stream", "priced", "usage_estimated", "capture")
_TIMES = ("latency_ms", "ttft_ms", "overhead_ms")

# Errors that lie in the rows given, not in the database's state: DuckDB's conversion
# and constraint errors, and Python's own while turning a value into a column.
ROW_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.DataError,
    duckdb.IntegrityError,
    duckdb.InvalidInputException,
    TypeError,
    ValueError,
    AttributeError,
    ArithmeticError,
)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row the ledger cannot store, and why."""

    record: RequestRecord
    reason: str


def row_problem(record: RequestRecord) -> str | None:
    """Why ``record`` cannot be stored, or None; mends strings that are not valid Unicode."""
    if not isinstance(record.ts, datetime):
        return f"ts is not a time: {record.ts!r}"
    for name in _REQUIRED_TEXT:
        if not isinstance(getattr(record, name), str):
            return f"{name} is not a string: {getattr(record, name)!r}"
    problem = (
        _ints(record)
        or _cost(record.cost_usd)
        or _typed(record, _FLAGS, bool, optional=False)
        or _typed(record, _TIMES, (int, float), optional=True)
        or _typed(record, _TEXT, str, optional=True)
        or _lists(record)
    )
    if problem is None:
        _mend_text(record)
    return problem


def _ints(record: RequestRecord) -> str | None:
    checks = [(name, BIGINT, False) for name in _BIGINTS]
    checks += [("status", INTEGER, False), ("retain_days", INTEGER, True)]
    for name, (low, high), optional in checks:
        value = getattr(record, name)
        if value is None and optional:
            continue
        if type(value) is not int:
            return f"{name} is not an integer: {value!r}"
        if not low <= value <= high:
            return f"{name} = {value} is beyond the column's range"
    return None


def _cost(cost: object) -> str | None:
    if cost is None:
        return None
    if not isinstance(cost, Decimal) or not cost.is_finite():
        return f"cost_usd is not a finite decimal: {cost!r}"
    if abs(cost) >= MAX_COST:
        return f"cost_usd = {cost} is beyond DECIMAL(18, 10)"
    return None


def _typed(
    record: RequestRecord,
    names: Sequence[str],
    kind: type | tuple[type, ...],
    *,
    optional: bool,
) -> str | None:
    for name in names:
        value = getattr(record, name)
        if value is None and optional:
            continue
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"{name} has the wrong type: {value!r}"
    return None


def _lists(record: RequestRecord) -> str | None:
    for name in _LISTS:
        value = getattr(record, name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{name} is not a list of strings: {value!r}"
    return None


def _mend_text(record: RequestRecord) -> None:
    for name in (*_REQUIRED_TEXT, *_TEXT, "content_output"):
        value = getattr(record, name)
        if isinstance(value, str) and not value.isascii():
            setattr(record, name, _valid_unicode(value))
    for name in _LISTS:
        value = getattr(record, name)
        if not all(v.isascii() for v in value):
            setattr(record, name, [_valid_unicode(v) for v in value])


def _valid_unicode(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def insert_isolating(
    insert: Callable[[Sequence[RequestRecord]], None], records: Sequence[RequestRecord]
) -> list[Rejected]:
    """Insert the rows the ledger can store; returns those it cannot, with the reason.

    Each call of ``insert`` is one transaction.  An error outside ``ROW_ERRORS``
    propagates: rows of halves already inserted are committed, so the caller's retry
    must skip ids already in the ledger.
    """
    rejected: list[Rejected] = []
    valid: list[RequestRecord] = []
    for record in records:
        problem = row_problem(record)
        if problem is None:
            valid.append(record)
        else:
            rejected.append(Rejected(record=record, reason=problem))
    _bisect(insert, valid, rejected)
    return rejected


def _bisect(
    insert: Callable[[Sequence[RequestRecord]], None],
    records: Sequence[RequestRecord],
    rejected: list[Rejected],
) -> None:
    if not records:
        return
    try:
        insert(records)
    except ROW_ERRORS as err:
        if len(records) == 1:
            rejected.append(Rejected(record=records[0], reason=f"{type(err).__name__}: {err}"))
            return
        half = len(records) // 2
        _bisect(insert, records[:half], rejected)
        _bisect(insert, records[half:], rejected)
