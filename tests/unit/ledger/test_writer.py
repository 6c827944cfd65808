"""The batched ledger writer: exact rows, batching, flush/close, spill, recovery, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.unit.ledger.conftest import T0, failing_inserts, record
from waystone_cli.core.errors import WaystoneError
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger import connection, spill
from waystone_cli.ledger import writer as writer_module
from waystone_cli.ledger.writer import LedgerWriter


def count(con: duckdb.DuckDBPyConnection, sql: str = "SELECT count(*) FROM requests") -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def spill_files(ledger_path: Path) -> list[str]:
    return sorted(p.name for p in ledger_path.parent.iterdir() if ".spill" in p.name)


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the writer inserts, in order."""
    sizes: list[int] = []
    real = writer_module.insert_batch

    def recording(
        con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord], *known: Any
    ) -> None:
        sizes.append(len(records))
        real(con, records, *known)

    monkeypatch.setattr(writer_module, "insert_batch", recording)
    return sizes


async def test_a_row_arrives_with_every_column_exact(con: duckdb.DuckDBPyConnection) -> None:
    full = RequestRecord(
        id="req-1",
        ts=datetime(2026, 3, 1, 12, 0, 0, 123456),
        route="chat/completions",
        status=200,
        outcome="ok",
        user_id="alice",
        group_id="acme",
        provider="openai",
        requested_model="o3",
        model="o3-mini",
        stream=True,
        input_tokens=1200,
        output_tokens=345,
        cached_tokens=200,
        cache_write_tokens=300,
        reasoning_tokens=64,
        audio_tokens=7,
        cost_usd=Decimal("0.00123456789"),
        priced=True,
        latency_ms=812.5,
        ttft_ms=95.25,
        overhead_ms=0.75,
        rulesets=["free-tier", "eu"],
        rules=["downgrade-o3"],
        datasets=["review"],
        usage_estimated=True,
        retain_days=30,
        error="cut short",
        flagged=True,
    )
    writer = LedgerWriter(con, instance="eu-1")
    await writer.start()
    writer.submit(full)
    await writer.flush()
    await writer.close()
    assert con.execute("SELECT * FROM requests").fetchall() == [
        (
            "req-1",
            datetime(2026, 3, 1, 12, 0, 0, 123456),
            "alice",
            "acme",
            "openai",
            "o3",
            "o3-mini",
            "chat/completions",
            True,
            200,
            "ok",
            1200,
            345,
            200,
            64,
            7,
            Decimal("0.0012345679"),
            True,
            812.5,
            95.25,
            0.75,
            ["free-tier", "eu"],
            ["downgrade-o3"],
            ["review"],
            True,
            30,
            "cut short",
            1,  # seq: the writer numbers the rows it appends, from 1 in a new ledger
            300,  # cache_write_tokens: added after seq (m008_cache_write_tokens)
            True,  # flagged (m009_flagged)
            "eu-1",  # instance: the writer's own (m011_instance)
        )
    ]


async def test_a_bare_row_keeps_nulls_and_empty_lists(con: duckdb.DuckDBPyConnection) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(RequestRecord(id="r", ts=T0, route="models", status=401, outcome="unauthorized"))
    await writer.close()
    assert con.execute("SELECT * FROM requests").fetchall() == [
        (
            "r",
            T0,
            None,
            None,
            None,
            None,
            None,
            "models",
            False,
            401,
            "unauthorized",
            0,
            0,
            0,
            0,
            0,
            None,
            True,
            None,
            None,
            None,
            [],
            [],
            [],
            False,
            None,
            None,
            1,
            0,
            False,  # flagged
            None,  # instance: this writer was given none
        )
    ]


async def test_rows_waiting_go_in_batches_of_batch_size(
    con: duckdb.DuckDBPyConnection, batches: list[int]
) -> None:
    writer = LedgerWriter(con, batch_size=1000)
    for n in range(2500):
        writer.submit(record(n))
    await writer.start()
    await writer.flush()
    await writer.close()
    assert batches == [1000, 1000, 500]
    assert count(con) == 2500


async def test_a_trickle_lingers_into_one_batch(
    con: duckdb.DuckDBPyConnection, batches: list[int]
) -> None:
    writer = LedgerWriter(con, flush_interval_ms=60_000)
    await writer.start()
    for n in range(3):
        writer.submit(record(n))
        await asyncio.sleep(0)
    assert writer.depth == 3
    await writer.flush()
    assert (batches, writer.depth, count(con)) == ([3], 0, 3)
    await writer.close()


async def test_rows_are_committed_without_flush_after_the_interval(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con, flush_interval_ms=20)
    await writer.start()
    writer.submit(record(1))
    while writer.depth:  # the writer commits on its own; no flush() here
        await asyncio.sleep(0.01)
    assert await writer.run_in_db(count) == 1
    assert writer.last_flush_ms is not None
    await writer.close()


async def test_flush_returns_once_earlier_rows_are_committed(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    for n in range(10):
        writer.submit(record(n))
    await writer.flush()
    assert await writer.run_in_db(count) == 10
    await writer.close()


async def test_ten_thousand_rows_submitted_at_once_leave_ten_thousand(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    for n in range(10_000):
        writer.submit(record(n, user_id=f"u{n % 50}"))
    await writer.close()
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone() == (
        10_000,
        10_000,
    )


async def test_a_full_queue_spills_to_disk_and_keeps_every_row(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    writer = LedgerWriter(con, queue_size=10, batch_size=100)
    await writer.start()
    for n in range(3000):
        writer.submit(record(n))
    assert spill_files(ledger_path) == ["ledger.duckdb.spill.jsonl"]
    assert writer.depth == 3000
    await writer.flush()
    assert writer.depth == 0
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone() == (
        3000,
        3000,
    )
    await writer.close()
    assert spill_files(ledger_path) == []


async def test_close_writes_the_queue_and_the_spill(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    writer = LedgerWriter(con, queue_size=5, flush_interval_ms=60_000)
    await writer.start()
    for n in range(50):
        writer.submit(record(n))
    await writer.close()
    assert count(con) == 50
    assert spill_files(ledger_path) == []


async def test_a_spill_left_by_a_crash_is_loaded_at_start(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    # The crash came after the draining file's first row was committed.
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(record(1))
    await writer.close()
    spill_path = ledger_path.parent / "ledger.duckdb.spill.jsonl"
    draining = spill.draining_path(spill_path)
    draining.write_text(spill.encode(record(1)) + "\n" + spill.encode(record(2)) + "\n")
    spill_path.write_text(spill.encode(record(3, user_id="bob")) + "\n")

    writer = LedgerWriter(con)
    await writer.start()
    assert con.execute("SELECT id, user_id FROM requests ORDER BY id").fetchall() == [
        ("req-000001", None),
        ("req-000002", None),
        ("req-000003", "bob"),
    ]
    # Nothing left on disk: the running writer holds an empty spill file open.
    assert spill_files(ledger_path) == ["ledger.duckdb.spill.jsonl"]
    assert spill_path.read_text() == ""
    await writer.close()
    assert spill_files(ledger_path) == []


async def test_spilled_cache_writes_replay_and_older_lines_without_them_read_zero(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    spill_path = ledger_path.parent / "ledger.duckdb.spill.jsonl"
    written = spill.encode(record(1, cached_tokens=40, cache_write_tokens=25))
    assert json.loads(written)["cache_write_tokens"] == 25
    # A line spilled by a waystone from before the column: no such key.
    older = json.loads(spill.encode(record(2, cached_tokens=40)))
    del older["cache_write_tokens"]
    spill_path.write_text(written + "\n" + json.dumps(older) + "\n")

    writer = LedgerWriter(con)
    await writer.start()
    assert con.execute(
        "SELECT id, cached_tokens, cache_write_tokens FROM requests ORDER BY id"
    ).fetchall() == [("req-000001", 40, 25), ("req-000002", 40, 0)]
    await writer.close()


async def test_an_unreadable_spill_line_is_set_aside(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    spill_path = ledger_path.parent / "ledger.duckdb.spill.jsonl"
    spill_path.write_text(spill.encode(record(1)) + "\n" + '{"id": "cut sh')
    writer = LedgerWriter(con)
    await writer.start()
    await writer.close()
    assert count(con) == 1
    assert spill_files(ledger_path) == ["ledger.duckdb.spill.jsonl.rejected"]
    assert spill.rejected_path(spill_path).read_text() == '{"id": "cut sh\n'


async def test_a_failing_batch_is_logged_and_its_rows_retried(
    con: duckdb.DuckDBPyConnection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    real = writer_module.insert_batch

    def fails_once(
        con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord], *known: Any
    ) -> None:
        calls.append(len(records))
        if len(calls) == 1:
            raise duckdb.IOException("disk I/O error")
        real(con, records, *known)

    monkeypatch.setattr(writer_module, "insert_batch", fails_once)
    writer = LedgerWriter(con, flush_interval_ms=10)
    await writer.start()
    for n in range(5):
        writer.submit(record(n))
    with caplog.at_level(logging.ERROR, logger="waystone.ledger"):
        await writer.flush()
    assert (calls, count(con), writer.healthy) == ([5, 5], 5, True)
    assert [r.getMessage() for r in caplog.records] == [
        "ledger batch of 5 rows failed; kept for retry"
    ]
    await writer.close()


async def test_close_with_a_broken_database_leaves_rows_for_the_next_start(
    con: duckdb.DuckDBPyConnection, ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(
        con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord], *known: Any
    ) -> None:
        raise duckdb.IOException("disk I/O error")

    monkeypatch.setattr(writer_module, "insert_batch", broken)
    writer = LedgerWriter(con)
    await writer.start()
    for n in range(7):
        writer.submit(record(n))
    await writer.close()
    assert (count(con), writer.healthy) == (0, False)
    assert spill.count_lines(ledger_path.parent / "ledger.duckdb.spill.jsonl.draining") == 7

    monkeypatch.undo()
    writer = LedgerWriter(con)
    await writer.start()
    await writer.close()
    assert count(con) == 7
    assert spill_files(ledger_path) == []


async def test_a_row_submitted_after_close_waits_on_the_spill(
    con: duckdb.DuckDBPyConnection, ledger_path: Path
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    await writer.close()
    writer.submit(record(1))
    assert spill.decode(
        (ledger_path.parent / "ledger.duckdb.spill.jsonl").read_text().strip()
    ) == record(1)


async def test_run_in_db_runs_on_the_writer_thread(con: duckdb.DuckDBPyConnection) -> None:
    writer = LedgerWriter(con)
    with pytest.raises(WaystoneError, match="not running"):
        writer.run_in_db(count)
    await writer.start()
    writer.submit(record(1))
    await writer.flush()
    assert await writer.run_in_db(
        lambda cur: cur.execute("SELECT id FROM requests").fetchall()
    ) == [("req-000001",)]
    await writer.close()


async def test_an_in_memory_ledger_needs_a_spill_path(tmp_path: Path) -> None:
    memory = duckdb.connect()
    with pytest.raises(WaystoneError, match="explicit spill_path"):
        LedgerWriter(memory)
    assert LedgerWriter(memory, spill_path=tmp_path / "s.jsonl").spill_path == tmp_path / "s.jsonl"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_the_writer_thread_runs_below_the_event_loop_priority(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    try:
        tid = await writer.run_in_db(lambda _: threading.get_native_id())
        ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        expected = min(ours + connection.WRITER_NICE, 19)
        assert tid != threading.get_native_id()
        assert os.getpriority(os.PRIO_PROCESS, tid) == expected
    finally:
        await writer.close()


async def test_healthy_again_once_rows_held_in_memory_are_written(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither the database nor the spill's folder takes anything for a while: the rows
    # wait in memory, then go in; readiness must follow the writer's state now.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    calls = failing_inserts(monkeypatch, duckdb.IOException("Permission denied"), times=2)
    writer = LedgerWriter(con, flush_interval_ms=10, spill_path=blocker / "spill.jsonl")
    await writer.start()
    for n in range(5):
        writer.submit(record(n))
    await writer.flush()
    assert (count(con), writer.depth, len(calls)) == (5, 0, 3)
    assert writer.healthy
    await writer.close()


async def test_the_spill_and_rejected_files_are_the_owners_only(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    spill_path = tmp_path / "spill" / "ledger.spill.jsonl"
    writer = LedgerWriter(con, queue_size=1, spill_path=spill_path)
    await writer.start()
    for n in range(3):
        writer.submit(record(n, input_tokens=2**63 if n == 2 else 10))
    assert spill_path.stat().st_mode & 0o777 == 0o600
    assert spill_path.parent.stat().st_mode & 0o777 == 0o700
    await writer.flush()
    assert writer.rejected_path.stat().st_mode & 0o777 == 0o600
    await writer.close()


async def test_rows_reach_the_spill_when_its_folder_no_longer_takes_new_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ledger fails and its folder stops letting files be created (replaced here by a
    # plain file, as root ignores permissions): at the stop, every queued row must still
    # reach the spill file, which the writer holds open from its start.
    folder = tmp_path / "ledger-folder"
    folder.mkdir()
    writer = LedgerWriter(con, spill_path=folder / "ledger.spill.jsonl")
    await writer.start()
    folder.rename(tmp_path / "moved")
    folder.write_text("")
    failing_inserts(monkeypatch, duckdb.IOException("Permission denied"))
    for n in range(300):
        writer.submit(record(n))
    await writer.close()
    assert spill.count_lines(tmp_path / "moved" / "ledger.spill.jsonl") == 300


async def test_rows_held_in_memory_go_to_the_spill_at_close_once_it_takes_them(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="waystone.ledger")
    blocker = tmp_path / "spill-folder"
    blocker.write_text("")  # no spill file can be made in it yet
    failing_inserts(monkeypatch, duckdb.IOException("Permission denied"))
    writer = LedgerWriter(con, flush_interval_ms=10, spill_path=blocker / "ledger.spill.jsonl")
    await writer.start()
    for n in range(4):
        writer.submit(record(n))
    for _ in range(100):  # the batch fails, and so does the spill: held in memory
        if any("cannot write the spill file" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert writer.depth == 4
    blocker.unlink()
    blocker.mkdir()
    await writer.close()
    assert spill.count_lines(blocker / "ledger.spill.jsonl") == 4
    assert [r for r in caplog.records if r.levelno >= logging.CRITICAL] == []
