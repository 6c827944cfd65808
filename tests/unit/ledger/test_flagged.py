"""Flagged rows (``m009_flagged``) in a real ledger, DuckDB and Postgres: written by the
writer, kept by the spill file, counted by ``usage top --flagged`` and ``usage show``,
replayed by ``usage spikes``, carried by every export format (DuckDB's), and absent
(never an error) from a DuckDB ledger made before them."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.unit.ledger.conftest import record
from tests.unit.ledger.test_migrations import NAMES, _ledger_with_the_first
from waystone_cli.ledger import export, reports
from waystone_cli.ledger.connection import open_readonly, open_readwrite
from waystone_cli.ledger.migrations import applied_migrations
from waystone_cli.ledger.postgres import open_postgres
from waystone_cli.ledger.spikes import rule_spikes
from waystone_cli.ledger.spill import decode, encode
from waystone_cli.ledger.writer import LedgerWriter

SPAN = {"since": "2026-03-01T00:00:00", "until": "2026-03-02T00:00:00"}


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The ledger on each backend; what only DuckDB has (exports) names its backend."""
    if request.param == "postgres":
        connection: Any = open_postgres(request.getfixturevalue("postgres_server").url)
    else:
        connection = open_readwrite(tmp_path / "ledger.duckdb")
    yield connection
    connection.close()


duckdb_only = pytest.mark.parametrize("con", ["duckdb"], indirect=True)


@pytest.fixture
async def flagged_ledger(con: Any, tmp_path: Path) -> Any:
    """Five rows of 12 tokens: alice 0-2 (1 and 2 flagged), bob 3-4 (4 flagged)."""
    writer = LedgerWriter(con, spill_path=tmp_path / "spill.jsonl")
    await writer.start()
    for n in range(5):
        user = "alice" if n < 3 else "bob"
        writer.submit(record(n, user_id=user, group_id="acme", flagged=n in (1, 2, 4)))
    await writer.close()
    return con


async def test_the_writer_stores_the_flag(flagged_ledger: duckdb.DuckDBPyConnection) -> None:
    rows = flagged_ledger.execute("SELECT id, flagged FROM requests ORDER BY id").fetchall()
    assert rows == [
        ("req-000000", False),
        ("req-000001", True),
        ("req-000002", True),
        ("req-000003", False),
        ("req-000004", True),
    ]


async def test_top_flagged_counts_only_flagged_requests(
    flagged_ledger: duckdb.DuckDBPyConnection,
) -> None:
    result = reports.top(flagged_ledger, by="user", metric="requests", flagged=True, **SPAN)
    assert [(r["user"], r["requests"], r["total_tokens"]) for r in result["rows"]] == [
        ("alice", 2, 24),
        ("bob", 1, 12),
    ]
    assert (result["entities"], result["total"]["requests"]) == (2, 3)
    every = reports.top(flagged_ledger, by="user", metric="requests", **SPAN)
    assert [(r["user"], r["requests"]) for r in every["rows"]] == [("alice", 3), ("bob", 2)]


async def test_show_reports_the_flagged_count(flagged_ledger: duckdb.DuckDBPyConnection) -> None:
    assert reports.show(flagged_ledger, "user", "alice", **SPAN)["flagged_requests"] == 2
    assert reports.show(flagged_ledger, "group", "acme", **SPAN)["flagged_requests"] == 3
    # Request 2 is at 12:00:02: a span ending then leaves it out.
    early = {"since": SPAN["since"], "until": "2026-03-01T12:00:02"}
    assert reports.show(flagged_ledger, "user", "alice", **early)["flagged_requests"] == 1


def test_the_spill_file_keeps_the_flag() -> None:
    assert decode(encode(record(1, flagged=True))).flagged is True
    assert decode(encode(record(1))).flagged is False
    old_line = json.loads(encode(record(1)))
    del old_line["flagged"]  # a line spilled before the field existed
    assert decode(json.dumps(old_line)).flagged is False


@duckdb_only
async def test_every_export_format_carries_the_flag(
    flagged_ledger: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    want = [False, True, True, False, True]
    out = {fmt: tmp_path / f"out.{fmt}" for fmt in ("csv", "json", "parquet", "cloudevents")}
    for fmt, path in out.items():
        export.export(flagged_ledger, fmt, str(path))
    with out["csv"].open() as f:
        assert [row["flagged"] for row in csv.DictReader(f)] == [str(w).lower() for w in want]
    lines = out["json"].read_text().splitlines()
    assert [json.loads(line)["flagged"] for line in lines] == want
    events = out["cloudevents"].read_text().splitlines()
    assert [json.loads(line)["data"]["flagged"] for line in events] == want
    parquet = duckdb.sql(f"SELECT flagged FROM '{out['parquet']}'").fetchall()
    assert [r[0] for r in parquet] == want


def test_a_ledger_from_before_flags_reads_with_none_and_migrates_to_false(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.duckdb"
    con = _ledger_with_the_first(NAMES.index("m009_flagged"), path)
    con.execute(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome) VALUES "
        "('old', '2026-03-01 12:00:00', 'alice', 'chat/completions', 200, 'ok')"
    )
    con.close()
    with open_readonly(path) as old:
        assert reports.top(old, by="user", flagged=True, **SPAN)["rows"] == []
        assert reports.show(old, "user", "alice", **SPAN)["flagged_requests"] == 0
        events = tmp_path / "events.jsonl"
        export.export(old, "cloudevents", str(events))
        assert json.loads(events.read_text())["data"]["flagged"] is False
    upgraded = open_readwrite(path)
    assert applied_migrations(upgraded) == NAMES
    assert upgraded.execute("SELECT flagged FROM requests").fetchall() == [(False,)]
    upgraded.close()


async def test_usage_spikes_replays_the_rule_on_the_ledger(
    flagged_ledger: duckdb.DuckDBPyConnection,
) -> None:
    # alice: requests 0, 1, 2 one second apart; with min 1 and no history before, request
    # 1 sees 1 in the window (average 0): the first spike, and request 2 the second.
    trigger = {"metric": "requests", "window": "1h", "factor": 2.0, "baseline": "4h", "min": 1.0}
    found = rule_spikes(flagged_ledger, "runaway", **trigger, since=SPAN["since"])
    assert [(r["user"], r["request"], r["requests"], r["factor"]) for r in found] == [
        ("alice", "req-000001", 2, None),
        ("bob", "req-000004", 1, None),
    ]
