"""Rows the ledger cannot store: checked at its edge, isolated by bisection, set aside once,
while every other row of their batch is written and the writer stays ready."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.unit.ledger.conftest import failing_inserts, record
from waystone_cli.ledger import spill
from waystone_cli.ledger import writer as writer_module
from waystone_cli.ledger.rows import row_problem
from waystone_cli.ledger.writer import LedgerWriter


def ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT id FROM requests ORDER BY id").fetchall()]


def rejected_lines(writer: LedgerWriter) -> list[dict[str, Any]]:
    return [json.loads(line) for line in writer.rejected_path.read_text().splitlines()]


BAD_VALUES = [
    pytest.param({"cost_usd": Decimal(10) ** 9}, "cost_usd", id="cost-beyond-decimal-18-10"),
    pytest.param({"input_tokens": 2**63}, "input_tokens", id="tokens-beyond-bigint"),
    pytest.param({"output_tokens": -(2**63) - 1}, "output_tokens", id="tokens-below-bigint"),
    pytest.param({"status": 2**31}, "status", id="status-beyond-integer"),
    pytest.param({"input_tokens": "12"}, "input_tokens", id="tokens-as-text"),
    pytest.param({"rules": "abc"}, "rules", id="rules-not-a-list"),
    pytest.param({"ts": "2026-03-01"}, "ts", id="ts-not-a-time"),
]


@pytest.mark.parametrize(("bad", "column"), BAD_VALUES)
async def test_a_row_the_ledger_cannot_store_is_set_aside_and_the_batch_written(
    con: duckdb.DuckDBPyConnection,
    bad: dict[str, Any],
    column: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    for n in range(10):
        writer.submit(record(n, user_id=f"user-{n}", **(bad if n == 4 else {})))
    with caplog.at_level(logging.WARNING, logger="waystone.ledger"):
        await writer.flush()
    assert ids(con) == [f"req-{n:06d}" for n in range(10) if n != 4]
    assert (writer.healthy, writer.depth, writer.rejected) == (True, 0, 1)
    [kept] = rejected_lines(writer)
    assert kept["id"] == "req-000004"
    assert kept["_rejected"].startswith(column)
    assert spill.decode(writer.rejected_path.read_text()).id == "req-000004"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    await writer.close()


async def test_a_lone_surrogate_is_mended_and_the_row_stored(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(record(1, user_id="al\ud800ice", error="bad \udcff byte", rules=["r\ud800"]))
    await writer.flush()
    assert con.execute("SELECT user_id, error, rules FROM requests").fetchall() == [
        ("al?ice", "bad ? byte", ["r?"])
    ]
    assert writer.rejected == 0
    await writer.close()


async def test_a_row_the_database_refuses_is_isolated_by_bisection(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A constraint the code does not know (added by hand): only the database can refuse.
    con.execute("CREATE TABLE requests_old AS SELECT * FROM requests")
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'requests_old' ORDER BY ordinal_position"
    ).fetchall()
    con.execute("DROP TABLE requests")
    body = ", ".join(f"{name} {kind}" for name, kind in columns)
    con.execute(f"CREATE TABLE requests ({body}, CHECK (input_tokens < 1000))")
    sizes = failing_inserts(monkeypatch)
    writer = LedgerWriter(con, batch_size=8)
    await writer.start()
    for n in range(8):
        writer.submit(record(n, input_tokens=5000 if n == 5 else 10))
    await writer.flush()
    assert ids(con) == [f"req-{n:06d}" for n in range(8) if n != 5]
    assert sizes == [8, 4, 4, 2, 1, 1, 2]
    [kept] = rejected_lines(writer)
    assert (kept["id"], kept["_rejected"].split(":")[0]) == ("req-000005", "ConstraintException")
    assert writer.healthy
    await writer.close()


async def test_a_spill_line_that_decodes_but_does_not_convert_is_set_aside(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    spill_path = ledger_path.parent / "ledger.duckdb.spill.jsonl"
    junk = json.loads(spill.encode(record(2)))
    junk["input_tokens"] = "abc"
    no_id = json.loads(spill.encode(record(4)))
    no_id["id"] = {"not": "a string"}
    lines = [spill.encode(record(1)), json.dumps(junk), spill.encode(record(3)), json.dumps(no_id)]
    spill_path.write_text("\n".join(lines) + "\n")
    writer = LedgerWriter(con)
    await writer.start()  # recovering a spill: ids already in the ledger are skipped
    assert ids(con) == ["req-000001", "req-000003"]
    assert [r["id"] for r in rejected_lines(writer)] == ["req-000002", {"not": "a string"}]
    assert (writer.rejected, writer.depth, writer.healthy) == (2, 0, True)
    await writer.close()


async def test_a_transient_error_is_retried_and_sets_nothing_aside(
    con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_inserts(monkeypatch, duckdb.IOException("No space left on device"), times=2)
    writer = LedgerWriter(con, flush_interval_ms=10)
    await writer.start()
    for n in range(6):
        writer.submit(record(n, cost_usd=Decimal(10) ** 9 if n == 2 else None))
    await writer.flush()
    assert ids(con) == [f"req-{n:06d}" for n in range(6) if n != 2]
    assert (writer.rejected, writer.healthy) == (1, True)
    assert [r["id"] for r in rejected_lines(writer)] == ["req-000002"]
    await writer.close()


async def test_an_unreadable_spill_line_is_set_aside_once_across_retries(
    con: duckdb.DuckDBPyConnection, ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill_path = ledger_path.parent / "ledger.duckdb.spill.jsonl"
    spill_path.write_text(spill.encode(record(1)) + "\n" + '{"id": "cut sh\n')
    failing_inserts(monkeypatch, duckdb.IOException("Could not set lock on file"), times=3)
    monkeypatch.setattr(writer_module, "_MAX_BACKOFF_S", 0.05)
    writer = LedgerWriter(con, flush_interval_ms=10)
    await writer.start()
    writer.submit(record(2))
    await writer.flush()
    assert ids(con) == ["req-000001", "req-000002"]
    assert writer.rejected_path.read_text() == '{"id": "cut sh\n'
    assert writer.rejected == 1
    await writer.close()


def test_row_problem_passes_a_full_valid_row() -> None:
    full = record(
        1,
        user_id="alice",
        cost_usd=Decimal("99999999.9999999999"),
        input_tokens=2**63 - 1,
        latency_ms=12,
        retain_days=30,
        rules=["a/b"],
    )
    assert row_problem(full) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (2**63, "cache_write_tokens = 9223372036854775808 is beyond the column's range"),
        (-(2**63) - 1, "cache_write_tokens = -9223372036854775809 is beyond the column's range"),
        (True, "cache_write_tokens has the wrong type: True"),
        ("12", "cache_write_tokens has the wrong type: '12'"),
    ],
)
def test_cache_write_tokens_are_checked_like_the_other_counts(value: object, problem: str) -> None:
    assert row_problem(record(1, cache_write_tokens=value)) == problem
    assert row_problem(record(1, cache_write_tokens=2**63 - 1)) is None
