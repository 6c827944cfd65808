"""Ledger migrations: from a blank file, in order, recorded, applied once."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from waystone_cli.core.errors import WaystoneError
from waystone_cli.core.records import REQUEST_COLUMNS
from waystone_cli.ledger.connection import open_readonly, open_readwrite
from waystone_cli.ledger.migrations import MIGRATIONS, applied_migrations, migrate

NAMES = [m.__name__ for m in MIGRATIONS]


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def test_names_are_ordered_and_unique() -> None:
    assert sorted(NAMES) == NAMES
    assert len(set(NAMES)) == len(NAMES)
    # Numbers are assigned ahead to the branches that add migrations: gaps are allowed.
    numbers = [int(n.split("_")[0][1:]) for n in NAMES]
    assert numbers[0] == 1
    assert numbers == sorted(set(numbers))


def test_blank_file_gets_every_migration_recorded(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "ledger.duckdb"))
    assert migrate(con) == NAMES
    assert applied_migrations(con) == NAMES
    assert {"_migrations", "requests", "users", "groups", "links", "content"} <= set(_tables(con))
    con.close()


def test_migrate_is_idempotent_across_reopens(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    con = open_readwrite(path)
    con.execute(
        "INSERT INTO users VALUES ('alice', '2026-11-01 10:00:00', '2026-11-01 10:00:00', '{}')"
    )
    assert migrate(con) == []
    con.close()
    again = open_readwrite(path)
    assert migrate(again) == []
    assert again.execute("SELECT count(*) FROM _migrations").fetchone() == (len(NAMES),)
    assert again.execute("SELECT id FROM users").fetchall() == [("alice",)]
    again.close()


def test_only_pending_migrations_run(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "ledger.duckdb"))
    con.execute(
        "CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    MIGRATIONS[0](con)
    con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [NAMES[0]])
    assert migrate(con) == NAMES[1:]
    assert sorted(applied_migrations(con)) == NAMES
    con.close()


def test_requests_table_has_the_record_columns(tmp_path: Path) -> None:
    con = open_readwrite(tmp_path / "ledger.duckdb")
    columns = [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'requests' ORDER BY ordinal_position"
        ).fetchall()
    ]
    con.close()
    # Inserts name their columns: a column added later sits after ``seq`` in the table.
    # ``seq`` and ``instance`` are the writer's, not fields of a record.
    assert sorted(columns) == sorted([*REQUEST_COLUMNS, "seq", "instance"])


def test_readonly_open_of_a_missing_ledger_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "absent.duckdb"
    with open_readonly(path) as con:
        assert con.execute("SELECT count(*) FROM requests").fetchone() == (0,)
    assert not path.exists()


def _ledger_with_the_first(count: int, path: Path) -> duckdb.DuckDBPyConnection:
    """A ledger file as an older waystone left it: only the first ``count`` migrations."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    for migration in MIGRATIONS[:count]:
        migration(con)
        con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [migration.__name__])
    return con


def test_a_ledger_from_before_folding_reads_and_upgrades(tmp_path: Path) -> None:
    """A file written before m006: read-only reports still answer (no fold mark, no seq);
    after the upgrade its rows, already in the rollup, are not folded in again."""
    from waystone_cli.ledger import reports
    from waystone_cli.ledger.rollup import fold, rebuild_rollup

    path = tmp_path / "ledger.duckdb"
    con = _ledger_with_the_first(5, path)
    con.execute(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens) "
        "VALUES ('r1', '2026-11-01 10:00:00', 'alice', 'chat/completions', 200, 'ok', 5)"
    )
    rebuild_rollup_before_m006 = (
        "INSERT INTO usage_daily VALUES ('2026-11-01', 'alice', '', '', '', 1, 5, 0, 0, 0, 0, 0)"
    )
    con.execute(rebuild_rollup_before_m006)
    con.close()
    with open_readonly(path) as old:
        assert reports.top(old, by="user")["rows"][0]["requests"] == 1
    upgraded = open_readwrite(path)
    assert applied_migrations(upgraded) == NAMES
    upgraded.begin()
    fold(upgraded)
    upgraded.commit()
    assert upgraded.execute("SELECT sum(requests) FROM usage_daily").fetchone() == (1,)
    assert reports.top(upgraded, by="user")["rows"][0]["requests"] == 1
    rebuild_rollup(upgraded)
    assert upgraded.execute("SELECT sum(requests) FROM usage_daily").fetchone() == (1,)
    upgraded.close()


def test_an_old_ledger_stops_counting_requests_without_tokens_as_unpriced(
    tmp_path: Path,
) -> None:
    """Before m007 a refused request (NULL cost) and a moderation of an unpriced model
    (``priced`` false, no tokens) counted as unpriced; only the chat that used tokens is."""
    path = tmp_path / "ledger.duckdb"
    con = _ledger_with_the_first(6, path)
    con.execute(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens, priced) "
        "VALUES ('blocked', '2026-11-01 10:00:00', 'alice', 'chat', 429, 'rate_limited', 0, true),"
        " ('moderation', '2026-11-01 10:01:00', 'alice', 'moderations', 200, 'ok', 0, false),"
        " ('chat', '2026-11-01 10:02:00', 'alice', 'chat', 200, 'ok', 9, false)"
    )
    con.execute(
        "INSERT INTO usage_daily VALUES ('2026-11-01', 'alice', '', '', '', 3, 9, 0, 0, 0, 0, 3)"
    )
    con.close()
    upgraded = open_readwrite(path)
    assert upgraded.execute("SELECT unpriced FROM usage_daily").fetchall() == [(1,)]
    assert upgraded.execute("SELECT id FROM requests WHERE NOT priced").fetchall() == [("chat",)]
    upgraded.close()


def _from_a_newer_waystone(path: Path) -> None:
    con = open_readwrite(path)
    con.execute("ALTER TABLE requests ADD COLUMN tenant VARCHAR NOT NULL DEFAULT 'x'")
    con.execute("ALTER TABLE requests ALTER COLUMN tenant DROP DEFAULT")
    con.execute("INSERT INTO _migrations VALUES ('m099_tenants', now()::TIMESTAMP)")
    con.close()


def test_a_ledger_with_a_newer_schema_is_refused_read_write(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    _from_a_newer_waystone(path)
    with pytest.raises(WaystoneError) as err:
        open_readwrite(path)
    assert str(err.value) == (
        f"the ledger {path} was written by a newer waystone (migrations this version "
        "does not know: m099_tenants); upgrade waystone to use it"
    )


def test_a_ledger_with_a_newer_schema_is_refused_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    _from_a_newer_waystone(path)
    with pytest.raises(WaystoneError, match="written by a newer waystone"), open_readonly(path):
        pass


def test_a_ledger_from_before_cache_writes_reads_and_migrates_with_zero_writes(
    tmp_path: Path,
) -> None:
    """A file written before m008: read-only reports answer with no cache writes; the
    upgrade adds the column, 0 on every older row, in ``requests`` and the rollup."""
    from waystone_cli.ledger import reports, spikes

    path = tmp_path / "ledger.duckdb"
    con = _ledger_with_the_first(NAMES.index("m008_cache_write_tokens"), path)
    con.execute(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens, "
        "cached_tokens) VALUES ('old', '2026-11-01 12:00:00', 'alice', 'chat/completions', "
        "200, 'ok', 100, 40)"
    )
    con.execute(
        "INSERT INTO usage_daily VALUES ('2026-11-01', 'alice', '', '', '', 1, 100, 0, 40, 0, 0, 0)"
    )
    con.close()
    with open_readonly(path) as old:
        [top] = reports.top(old, by="user")["rows"]
        assert (top["cached_tokens"], top["cache_write_tokens"]) == (40, 0)
        shown = reports.show(old, "user", "alice", since="2026-11-01T06:00:00")
        assert (shown["cached_tokens"], shown["cache_write_tokens"]) == (40, 0)
        hours = reports.timeline(
            old, every="hour", since="2026-11-01T12:00:00", until="2026-11-01T13:00:00"
        )
        assert [h["cache_write_tokens"] for h in hours] == [0]
        assert spikes.spikes(old, since="2026-11-01T00:00:00", until="2026-11-02T00:00:00") == []
    upgraded = open_readwrite(path)
    assert applied_migrations(upgraded) == NAMES
    assert upgraded.execute(
        "SELECT cached_tokens, cache_write_tokens FROM requests"
    ).fetchall() == [(40, 0)]
    assert upgraded.execute(
        "SELECT cached_tokens, cache_write_tokens FROM usage_daily"
    ).fetchall() == [(40, 0)]
    upgraded.close()
