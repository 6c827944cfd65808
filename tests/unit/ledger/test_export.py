"""Export selections by ``seq`` (DuckDB) or transaction id (Postgres) for a cursor, and the
CloudEvents ``source``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.servers import PostgresServer
from tests.unit.ledger.test_reports import ROWS, insert
from waystone_cli.ledger.export import export, export_plan, ledger_id
from waystone_cli.ledger.migrations import migrate
from waystone_cli.ledger.postgres import PgLedger, open_postgres


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


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[PgLedger]:
    con = open_postgres(postgres_server.url)
    yield con
    con.close()


def _cursor_run(con: PgLedger, out: Path, after: int | None) -> tuple[list[str], int]:
    """One resumable export as the command runs it: the plan, then its range."""
    plan = export_plan(con, after_seq=after, cursor=True)
    export(con, "json", str(out), after_seq=after, upto_seq=plan["upto_seq"], overwrite=True)
    ids = _ids(out)
    assert plan["rows"] == len(ids)
    return ids, plan["upto_seq"]


def test_a_postgres_cursor_takes_each_committed_row_once_across_runs(
    pg: PgLedger, tmp_path: Path
) -> None:
    insert(pg, ROWS[:3])
    out = tmp_path / "out.jsonl"
    first, mark = _cursor_run(pg, out, None)
    assert first == ["r1", "r2", "r3"]
    assert _cursor_run(pg, out, mark) == ([], mark)  # nothing new: the mark stays
    insert(pg, ROWS[3:])
    second, _ = _cursor_run(pg, out, mark)
    assert second == ["r4", "r5", "r6", "r7"]


def test_a_postgres_cursor_waits_for_a_writer_that_committed_late(
    pg: PgLedger, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Two instances' writers: the one that began first commits last.  A number drawn at
    write time would let the cursor pass its row; the transaction id holds it back."""
    slow = open_postgres(postgres_server.url)
    try:
        slow.begin()
        insert(slow, ROWS[:1])  # r1: written, not committed
        insert(pg, ROWS[1:2])  # r2: another writer, committed
        out = tmp_path / "out.jsonl"
        ids, mark = _cursor_run(pg, out, None)
        assert ids == []  # r2 waits behind the open transaction too
        slow.commit()
        ids, mark = _cursor_run(pg, out, mark)
        assert sorted(ids) == ["r1", "r2"]
        assert _cursor_run(pg, out, mark)[0] == []
    finally:
        slow.close()


def test_rows_from_before_the_xid_column_come_in_a_cursors_first_export(
    pg: PgLedger, tmp_path: Path
) -> None:
    insert(pg, ROWS[:2])
    pg.execute("UPDATE requests SET xid = NULL WHERE id = 'r1'")  # as an older row
    ids, mark = _cursor_run(pg, tmp_path / "out.jsonl", None)
    assert ids == ["r1", "r2"]
    assert _cursor_run(pg, tmp_path / "out.jsonl", mark)[0] == []


def test_a_postgres_ledger_has_an_id_of_its_own(
    pg: PgLedger, postgres_server: PostgresServer, con: duckdb.DuckDBPyConnection
) -> None:
    first = ledger_id(pg)
    assert first is not None and first == ledger_id(pg) and first != ledger_id(con)
    pg.execute("DROP DATABASE IF EXISTS other")
    pg.execute("CREATE DATABASE other")
    other = open_postgres(postgres_server.url.rsplit("/", 1)[0] + "/other")
    try:
        migrate(other)
        assert ledger_id(other) not in (None, first)
    finally:
        other.close()
