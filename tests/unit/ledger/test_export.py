"""Export selections by ``seq`` for a cursor, and the CloudEvents ``source``."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.unit.ledger.test_reports import ROWS, insert
from waystone_cli.ledger.export import export, export_plan, ledger_id


def _numbered(con: duckdb.DuckDBPyConnection) -> None:
    """r1 and r2 written before the ledger numbered rows; the rest numbered 1, 2, ..."""
    insert(con, ROWS)
    con.execute(
        "UPDATE requests SET seq = n.seq FROM (SELECT id, row_number() OVER (ORDER BY ts) - 2 "
        "AS seq FROM requests) AS n WHERE requests.id = n.id AND n.seq > 0"
    )


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_a_cursors_first_export_includes_the_rows_without_a_seq(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _numbered(con)
    plan = export_plan(con, cursor=True)
    assert (plan["rows"], plan["upto_seq"], plan["ledger_id"]) == (7, 5, ledger_id(con))
    out = tmp_path / "all.jsonl"
    export(con, "cloudevents", str(out), upto_seq=plan["upto_seq"])
    assert _ids(out) == ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]


def test_a_cursor_export_takes_the_rows_after_its_seq_up_to_the_plans(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    _numbered(con)
    plan = export_plan(con, after_seq=2, cursor=True)
    assert (plan["rows"], plan["upto_seq"]) == (3, 5)
    out = tmp_path / "after.jsonl"
    export(con, "cloudevents", str(out), after_seq=2, upto_seq=4)  # a row came after the plan
    assert _ids(out) == ["r5", "r6"]


def test_the_ledger_id_differs_between_ledgers_and_stays_when_rows_go(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from waystone_cli.ledger.connection import open_readonly, open_readwrite

    before = ledger_id(con)
    insert(con, ROWS)
    con.execute("DELETE FROM requests")
    assert ledger_id(con) == before
    other = open_readwrite(tmp_path / "other.duckdb")
    try:
        assert ledger_id(other) != before
    finally:
        other.close()
    with open_readonly(tmp_path / "not-yet.duckdb") as missing:  # read as empty, in memory
        assert ledger_id(missing) is None


def test_cloudevents_source_is_the_rows_instance_when_the_ledger_has_one(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    insert(con, ROWS[:2])
    # m011_instance added the column; the writer fills it (one-off inserts leave NULL).
    con.execute("UPDATE requests SET instance = 'eu-1' WHERE id = 'r1'")
    out = tmp_path / "events.jsonl"
    export(con, "cloudevents", str(out), source="fallback")
    sources = [json.loads(line)["source"] for line in out.read_text().splitlines()]
    assert sources == ["eu-1", "fallback"]
