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

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

import duckdb

from waystone_cli.core.records import RequestRecord

BIGINT = (-(2**63), 2**63 - 1)
INTEGER = (-(2**31), 2**31 - 1)
# DECIMAL(18, 10) holds eight digits before the point.
MAX_COST = Decimal(10) ** 8

_TEXT, _NUMBER, _NULL = (str,), (int, float), (type(None),)
_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_tokens",
)
# The Python types each field of a row may hold (``bool`` is not an ``int`` here).
_TYPES: dict[str, tuple[type, ...]] = {
    "id": _TEXT,
    "ts": (datetime,),
    "route": _TEXT,
    "status": (int,),
    "outcome": _TEXT,
    **dict.fromkeys(("user_id", "group_id", "provider", "requested_model", "model"), _TEXT + _NULL),
    **dict.fromkeys(("stream", "priced", "usage_estimated", "capture", "flagged"), (bool,)),
    **dict.fromkeys(_COUNTS, (int,)),
    "cost_usd": (Decimal, type(None)),
    **dict.fromkeys(("latency_ms", "ttft_ms", "overhead_ms"), _NUMBER + _NULL),
    **dict.fromkeys(("rulesets", "rules", "datasets"), (list,)),
    "retain_days": (int, type(None)),
    "error": _TEXT + _NULL,
    "content_output": _TEXT + _NULL,
}
_RANGES = {
    **dict.fromkeys(_COUNTS, BIGINT),
    "status": INTEGER,
    "retain_days": INTEGER,
}
_TYPED = tuple(_TYPES.items())
_STRINGS = tuple(name for name, kinds in _TYPES.items() if str in kinds)
_LISTS = ("rulesets", "rules", "datasets")
_values = attrgetter(*_TYPES)

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


def is_row_error(err: BaseException) -> bool:
    """Whether ``err`` lies in the rows given: ``ROW_ERRORS``, or Postgres's data and
    constraint errors (a NUL character in a text, a duplicate id).  psycopg is looked up
    only if loaded: an error cannot come from it otherwise, and the DuckDB path never
    imports it."""
    if isinstance(err, ROW_ERRORS):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(err, psycopg.DataError | psycopg.IntegrityError)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row the ledger cannot store, and why."""

    record: RequestRecord
    reason: str


def row_problem(record: RequestRecord) -> str | None:
    """Why ``record`` cannot be stored, or None; mends strings that are not valid Unicode."""
    for (name, kinds), value in zip(_TYPED, _values(record), strict=True):
        if type(value) not in kinds:
            return f"{name} has the wrong type: {value!r}"
    for name, (low, high) in _RANGES.items():
        value = getattr(record, name)
        if value is not None and not low <= value <= high:
            return f"{name} = {value} is beyond the column's range"
    cost = record.cost_usd
    if cost is not None and not (cost.is_finite() and abs(cost) < MAX_COST):
        return f"cost_usd = {cost} is beyond DECIMAL(18, 10)"
    for name in _LISTS:
        items = getattr(record, name)
        if items and not all(type(item) is str for item in items):
            return f"{name} holds a value that is not a string"
    _mend_text(record)
    return None


def _mend_text(record: RequestRecord) -> None:
    for name in _STRINGS:
        value = getattr(record, name)
        if value is not None and not value.isascii():
            setattr(record, name, _valid_unicode(value))
    for name in _LISTS:
        items = getattr(record, name)
        if items and not all(item.isascii() for item in items):
            setattr(record, name, [_valid_unicode(item) for item in items])


def _valid_unicode(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def insert_isolating(
    insert: Callable[[Sequence[RequestRecord]], None],
    records: Sequence[RequestRecord],
    skip_known: Callable[[Sequence[RequestRecord]], list[RequestRecord]] | None = None,
) -> list[Rejected]:
    """Insert the rows the ledger can store; returns those it cannot, with the reason.

    Each call of ``insert`` is one transaction.  An error outside ``ROW_ERRORS``
    propagates: rows of halves already inserted are committed, so the caller's retry
    must skip ids already in the ledger (``skip_known``, which only sees checked rows:
    an id that is not a string would fail its query too).
    """
    rejected: list[Rejected] = []
    valid: list[RequestRecord] = []
    for record in records:
        problem = row_problem(record)
        if problem is None:
            valid.append(record)
        else:
            rejected.append(Rejected(record=record, reason=problem))
    if skip_known is not None:
        valid = skip_known(valid)
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
    except Exception as err:
        if not is_row_error(err):
            raise
        if len(records) == 1:
            rejected.append(Rejected(record=records[0], reason=f"{type(err).__name__}: {err}"))
            return
        half = len(records) // 2
        _bisect(insert, records[:half], rejected)
        _bisect(insert, records[half:], rejected)
