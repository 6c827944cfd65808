"""Opening the ledger: files that hold captured prompts are the owner's only, and the
read-write connection bounds the memory DuckDB keeps (``bound_memory``)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from waystone_cli.core.config import LedgerConfig
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.retention import prune
from waystone_cli.ledger.rollup import rebuild_rollup


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_ledger_folder_file_and_wal_are_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "waystone" / "ledger.duckdb"
    con = open_readwrite(path)
    wal = path.with_name("ledger.duckdb.wal")
    assert wal.exists()  # the migrations are not checkpointed yet
    assert (mode(path.parent), mode(path), mode(wal)) == (0o700, 0o600, 0o600)
    con.close()


def test_an_existing_ledger_is_made_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    open_readwrite(path).close()
    os.chmod(path, 0o644)
    con = open_readwrite(path)
    assert mode(path) == 0o600
    con.close()


MIB = 1 << 20


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT value FROM duckdb_settings() WHERE name = ?", [name]).fetchone()
    assert row is not None
    return str(row[0])


def _as_shown(name: str, value: str) -> str:
    """How DuckDB shows ``value`` once set (it rounds and reformats sizes)."""
    other = duckdb.connect()
    other.execute(f"SET {name} = '{value}'")
    return _setting(other, name)


def _cached_mib(con: duckdb.DuckDBPyConnection) -> float:
    """What DuckDB's buffer pool holds of the file's tables."""
    row = con.execute(
        "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'"
    ).fetchone()
    return float(row[0] or 0) / MIB if row else 0.0


def _fill_and_scan(con: duckdb.DuckDBPyConnection) -> None:
    """Write a table bigger than the limit to the file, then read all of it back."""
    con.execute(
        "CREATE TABLE big AS SELECT i, md5(i::VARCHAR) AS a, md5((i + 1)::VARCHAR) AS b "
        "FROM range(600000) t(i)"
    )
    con.execute("CHECKPOINT")
    con.execute("SELECT max(a), max(b), sum(i) FROM big").fetchall()


def test_the_settings_are_applied_on_open(tmp_path: Path) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb", memory_limit_mb=48)
    try:
        assert _setting(con, "memory_limit") == _as_shown("memory_limit", "48MiB")
        assert _setting(con, "checkpoint_threshold") == _as_shown("checkpoint_threshold", "4MB")
        flush = _setting(con, "allocator_flush_threshold")
        assert flush == _as_shown("allocator_flush_threshold", "4MB")
        assert flush != _setting(duckdb.connect(), "allocator_flush_threshold")
    finally:
        con.close()


def test_the_default_limit_is_the_configs(tmp_path: Path) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb")
    try:
        shown = _as_shown("memory_limit", f"{LedgerConfig.memory_limit_mb}MiB")
        assert _setting(con, "memory_limit") == shown
    finally:
        con.close()


def test_a_scan_of_a_big_table_keeps_the_cache_under_the_limit(tmp_path: Path) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb", memory_limit_mb=16)
    try:
        _fill_and_scan(con)
        assert _cached_mib(con) <= 16
    finally:
        con.close()


def test_without_the_limit_the_same_scan_keeps_more(tmp_path: Path) -> None:
    """The test above can fail: DuckDB's default keeps every block read."""
    con = duckdb.connect(str(tmp_path / "plain.duckdb"))
    try:
        _fill_and_scan(con)
        assert _cached_mib(con) > 16
    finally:
        con.close()


def _many_users(con: duckdb.DuckDBPyConnection, retain_days: str = "NULL") -> None:
    """More rollup keys (user and day) than a 16 MiB primary-key index holds."""
    con.execute(
        "INSERT INTO requests (id, ts, user_id, group_id, provider, model, route, status,"
        " outcome, retain_days) SELECT 'r' || i, TIMESTAMP '2026-11-01' + to_minutes(i % 43200),"
        f" 'user-' || (i % 100000), 'g', 'p', 'm', 'chat/completions', 200, 'ok', {retain_days}"
        " FROM range(400000) t(i)"
    )


def test_a_rebuild_of_a_rollup_bigger_than_the_limit_runs_and_the_limit_comes_back(
    tmp_path: Path,
) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb", memory_limit_mb=16)
    try:
        _many_users(con)
        rebuild_rollup(con)
        row = con.execute("SELECT count(*) FROM usage_daily").fetchone()
        assert row is not None and row[0] > 100000
        assert _setting(con, "memory_limit") == _as_shown("memory_limit", "16MiB")
    finally:
        con.close()


def test_a_prune_that_rebuilds_a_big_rollup_runs_and_the_limit_comes_back(
    tmp_path: Path,
) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb", memory_limit_mb=16)
    try:
        _many_users(con, retain_days="CASE WHEN i % 43200 < 1440 THEN 1 END")
        result = prune(con, now="2026-11-15T00:00:00")
        assert result["requests"] == 10 * 1440  # the first day of each 30-day cycle
        assert _setting(con, "memory_limit") == _as_shown("memory_limit", "16MiB")
    finally:
        con.close()
