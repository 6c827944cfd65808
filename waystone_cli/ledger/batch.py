"""One batch of request rows written in one transaction, from column lists.

DuckDB's ``executemany`` binds and runs one statement per row (about a thousand rows a
second).  Here each column travels as one list parameter and ``UNNEST`` turns the lists
back into rows, so a batch is one statement per table; ``bench/ledger_insert.py``
measures both and a multi-row ``VALUES``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from waystone_cli.core.records import REQUEST_COLUMNS, RequestRecord
from waystone_cli.ledger.entities import upsert_entities
from waystone_cli.ledger.rollup import add_to_rollup, quantize_cost

# The SQL type of each column of ``requests`` (a unit test checks it against the table).
REQUEST_TYPES: dict[str, str] = {
    "id": "VARCHAR",
    "ts": "TIMESTAMP",
    "user_id": "VARCHAR",
    "group_id": "VARCHAR",
    "provider": "VARCHAR",
    "requested_model": "VARCHAR",
    "model": "VARCHAR",
    "route": "VARCHAR",
    "stream": "BOOLEAN",
    "status": "INTEGER",
    "outcome": "VARCHAR",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cached_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "audio_tokens": "BIGINT",
    "cost_usd": "DECIMAL(18, 10)",
    "priced": "BOOLEAN",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "overhead_ms": "DOUBLE",
    "rulesets": "VARCHAR[]",
    "rules": "VARCHAR[]",
    "datasets": "VARCHAR[]",
    "usage_estimated": "BOOLEAN",
    "retain_days": "INTEGER",
    "error": "VARCHAR",
}


def _cost(record: RequestRecord) -> str | None:
    # Passed as exact text: the cast to DECIMAL never goes through a float.
    cost = quantize_cost(record.cost_usd)
    return None if cost is None else format(cost, "f")


_CONVERT: dict[str, Callable[[RequestRecord], Any]] = {"cost_usd": _cost}


def insert_sql() -> str:
    """``INSERT INTO requests`` from one list parameter per column.

    ``list_zip`` then one ``UNNEST`` is faster than one ``UNNEST`` per column, which
    DuckDB has to line up row by row (bench/ledger_insert.py).
    """
    columns = ", ".join(REQUEST_COLUMNS)
    lists = ", ".join(f"?::{REQUEST_TYPES[c]}[]" for c in REQUEST_COLUMNS)
    return (
        f"INSERT INTO requests ({columns}) SELECT UNNEST(row, recursive := true) "
        f"FROM (SELECT UNNEST(list_zip({lists})) AS row)"
    )


def request_columns(records: Sequence[RequestRecord]) -> list[list[Any]]:
    """The batch as one list per column of ``requests``, in ``REQUEST_COLUMNS`` order."""
    lists: list[list[Any]] = []
    for name in REQUEST_COLUMNS:
        convert = _CONVERT.get(name)
        if convert is None:
            lists.append([getattr(r, name) for r in records])
        else:
            lists.append([convert(r) for r in records])
    return lists


def insert_batch(con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord]) -> None:
    """Write the rows and everything derived from them in one transaction."""
    if not records:
        return
    con.begin()
    try:
        con.execute(insert_sql(), request_columns(records))
        upsert_entities(con, records)
        _insert_content(con, records)
        add_to_rollup(con, records)
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _insert_content(con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord]) -> None:
    kept = [r for r in records if r.capture or r.datasets]
    if kept:
        con.execute(
            "INSERT INTO content SELECT UNNEST(?::VARCHAR[]), UNNEST(?::TIMESTAMP[]), "
            "UNNEST(?::JSON[]), UNNEST(?::VARCHAR[])",
            [
                [r.id for r in kept],
                [r.ts for r in kept],
                [_json_or_none(r.content_input) for r in kept],
                [r.content_output for r in kept],
            ],
        )
    items = [(name, r.id, r.ts) for r in records for name in r.datasets]
    if items:
        con.execute(
            "INSERT INTO dataset_items SELECT UNNEST(?::VARCHAR[]), UNNEST(?::VARCHAR[]), "
            "UNNEST(?::TIMESTAMP[])",
            [[i[0] for i in items], [i[1] for i in items], [i[2] for i in items]],
        )


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str)


def drop_known(
    con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord]
) -> list[RequestRecord]:
    """The records whose ids are not in the ledger yet (recovering a spill after a crash)."""
    if not records:
        return []
    known = {
        row[0]
        for row in con.execute(
            "SELECT id FROM requests WHERE id IN (SELECT UNNEST(?::VARCHAR[]))",
            [[r.id for r in records]],
        ).fetchall()
    }
    return [r for r in records if r.id not in known]
