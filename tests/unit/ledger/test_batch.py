"""The requests insert: columns no row of a batch sets are left to the table's DEFAULT,
and every row still reads back exactly as written."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb
import pytest

from tests.unit.ledger.conftest import T0, record
from waystone_cli.core.records import REQUEST_COLUMNS, RequestRecord
from waystone_cli.ledger.batch import DEFAULTS, insert_batch
from waystone_cli.ledger.rollup import quantize_cost


def stored(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    columns = ", ".join(REQUEST_COLUMNS)
    return con.execute(f"SELECT {columns} FROM requests ORDER BY id").fetchall()


def written(records: list[RequestRecord]) -> list[tuple[Any, ...]]:
    def value(r: RequestRecord, name: str) -> Any:
        return quantize_cost(r.cost_usd) if name == "cost_usd" else getattr(r, name)

    return [
        tuple(value(r, c) for c in REQUEST_COLUMNS) for r in sorted(records, key=lambda r: r.id)
    ]


def test_the_defaults_left_out_are_the_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO requests (id, ts, route, status, outcome) VALUES ('r', ?, 'chat', 200, 'ok')",
        [T0],
    )
    names = list(DEFAULTS)
    row = con.execute(f"SELECT {', '.join(names)} FROM requests").fetchone()
    assert row is not None
    assert dict(zip(names, row, strict=True)) == DEFAULTS


UNUSUAL: dict[str, Any] = {
    "stream": True,
    "cached_tokens": 3,
    "cache_write_tokens": 6,
    "reasoning_tokens": 4,
    "audio_tokens": 5,
    "priced": False,
    "ttft_ms": 12.5,
    "rulesets": ["team"],
    "rules": ["team.cap"],
    "datasets": ["review"],
    "usage_estimated": True,
    "retain_days": 30,
    "error": "boom",
    "flagged": True,
}


def test_every_skippable_column_is_exercised() -> None:
    assert set(UNUSUAL) == set(DEFAULTS)


@pytest.mark.parametrize("column", list(UNUSUAL))
def test_one_unusual_row_keeps_its_value_and_the_others_their_defaults(
    con: duckdb.DuckDBPyConnection, column: str
) -> None:
    records = [record(n, cost_usd=Decimal("0.000123")) for n in range(1, 4)]
    setattr(records[1], column, UNUSUAL[column])
    insert_batch(con, records)
    assert stored(con) == written(records)


def test_a_batch_of_usual_rows_reads_back_whole(con: duckdb.DuckDBPyConnection) -> None:
    records = [record(n, user_id=f"u{n}", cost_usd=None, priced=False) for n in range(1, 6)]
    records += [record(n, latency_ms=1.5, overhead_ms=0.25) for n in range(6, 9)]
    insert_batch(con, records)
    assert stored(con) == written(records)
