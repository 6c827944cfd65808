"""The writer's memory of known entities: what a batch skips, and what it still writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import duckdb
import pytest

from tests.unit.ledger.conftest import T0, record
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.batch import insert_batch, write_entity_times
from waystone_cli.ledger.entities import KnownEntities
from waystone_cli.ledger.writer import LedgerWriter

USERS = "SELECT id, first_seen, last_seen, metadata FROM users ORDER BY id"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Recording:
    """The connection, noting the first words of every statement run through it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.statements: list[str] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> duckdb.DuckDBPyConnection:
        self.statements.append(" ".join(sql.split()[:3]))
        return self.con.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def known(clock: Clock) -> KnownEntities:
    return KnownEntities(clock=clock)


def write(
    con: duckdb.DuckDBPyConnection, known: KnownEntities, *records: RequestRecord
) -> list[str]:
    """Insert one batch; the statements it ran."""
    recording = Recording(con)
    insert_batch(cast(duckdb.DuckDBPyConnection, recording), list(records), known)
    return recording.statements


def rows(con: duckdb.DuckDBPyConnection, sql: str = USERS) -> list[Any]:
    return con.execute(sql).fetchall()


def test_a_known_entity_without_patch_writes_nothing_until_the_minute_is_up(
    con: duckdb.DuckDBPyConnection, known: KnownEntities, clock: Clock
) -> None:
    first = write(con, known, record(1, user_id="alice", group_id="acme"))
    assert first == [
        "MERGE INTO users",
        "MERGE INTO groups",
        "MERGE INTO links",
        "UPDATE usage_daily AS",
        "INSERT INTO usage_daily",  # a new rollup key
    ]
    clock.now = 59.0
    assert write(con, known, record(30, user_id="alice", group_id="acme")) == [
        "UPDATE usage_daily AS"
    ]
    assert rows(con) == [("alice", at(1), at(1), "{}")]
    clock.now = 60.0
    assert write(con, known, record(61, user_id="alice", group_id="acme")) == [
        "UPDATE users AS",
        "UPDATE groups AS",
        "UPDATE usage_daily AS",
    ]
    assert rows(con) == [("alice", at(1), at(61), "{}")]
    assert rows(con, "SELECT id, last_seen FROM groups") == [("acme", at(61))]
    assert rows(con, "SELECT * FROM links") == [("alice", "acme", at(1))]


def test_a_metadata_patch_merges_once_until_it_changes_or_is_forgotten(
    con: duckdb.DuckDBPyConnection, known: KnownEntities
) -> None:
    free = {"tier": "free"}
    assert "MERGE INTO users" in write(con, known, record(1, user_id="alice", user_metadata=free))
    assert "MERGE INTO users" not in write(
        con, known, record(2, user_id="alice", user_metadata=free)
    )
    pro = {"tier": "pro", "seats": 3}
    assert "MERGE INTO users" in write(con, known, record(3, user_id="alice", user_metadata=pro))
    # Something else (``/api/identify``) rewrites the metadata: the same patch applies again.
    con.execute("""UPDATE users SET metadata = '{"tier":"trial","seats":3}'""")
    known.forget_metadata()
    assert "MERGE INTO users" in write(con, known, record(4, user_id="alice", user_metadata=pro))
    assert rows(con) == [("alice", at(1), at(4), '{"tier":"pro","seats":3}')]


def test_an_earlier_row_from_a_drained_spill_moves_first_seen_and_the_link(
    con: duckdb.DuckDBPyConnection, known: KnownEntities
) -> None:
    write(con, known, record(50, user_id="alice", group_id="acme"))
    statements = write(con, known, record(10, user_id="alice", group_id="acme"))
    assert statements == [
        "MERGE INTO users",
        "MERGE INTO groups",
        "MERGE INTO links",
        "UPDATE usage_daily AS",
    ]
    assert rows(con) == [("alice", at(10), at(50), "{}")]
    assert rows(con, "SELECT * FROM links") == [("alice", "acme", at(10))]


def test_pending_times_are_written_when_due_or_forced(
    con: duckdb.DuckDBPyConnection, known: KnownEntities, clock: Clock
) -> None:
    write(con, known, record(1, user_id="alice"), record(2, user_id="bob"))
    write(con, known, record(7, user_id="alice"))
    assert known.due_in() == 60.0
    write_entity_times(con, known)  # not due: nothing written
    assert [r[2] for r in rows(con)] == [at(1), at(2)]
    clock.now = 75.0
    assert known.due_in() == 0.0
    write_entity_times(con, known)
    assert ([r[2] for r in rows(con)], known.due_in()) == ([at(7), at(2)], None)
    write(con, known, record(9, user_id="bob"))
    write_entity_times(con, known, force=True)
    assert [r[2] for r in rows(con)] == [at(7), at(9)]


def test_a_failed_batch_leaves_the_memory_as_it_was(
    con: duckdb.DuckDBPyConnection, known: KnownEntities
) -> None:
    con.execute("ALTER TABLE usage_daily RENAME TO usage_daily_gone")
    with pytest.raises(duckdb.CatalogException):
        write(con, known, record(1, user_id="alice", user_metadata={"tier": "free"}))
    con.execute("ALTER TABLE usage_daily_gone RENAME TO usage_daily")
    assert len(known) == 0
    write(con, known, record(2, user_id="alice", user_metadata={"tier": "free"}))
    assert rows(con) == [("alice", at(2), at(2), '{"tier":"free"}')]


def test_the_memory_stays_under_its_limit_and_a_forgotten_entity_is_merged_again(
    con: duckdb.DuckDBPyConnection, clock: Clock
) -> None:
    known = KnownEntities(limit=4, clock=clock)
    for n in range(10):
        write(con, known, record(n, user_id=f"u{n}", group_id="acme"))
    assert len(known) == 4 + 1 + 4  # users, the one group, links: each evicted to 3 past 4
    assert "MERGE INTO users" in write(con, known, record(20, user_id="u0", group_id="acme"))
    assert rows(con, "SELECT id, first_seen, last_seen FROM users WHERE id = 'u0'") == [
        ("u0", at(0), at(20))
    ]


def test_load_starts_from_the_most_recently_seen(
    con: duckdb.DuckDBPyConnection, clock: Clock
) -> None:
    insert_batch(con, [record(n, user_id=f"u{n}", group_id="acme") for n in range(5)])
    known = KnownEntities(limit=2, clock=clock)
    known.load(con)
    assert write(con, known, record(9, user_id="u4", group_id="acme")) == ["UPDATE usage_daily AS"]
    assert write(con, known, record(10, user_id="u0", group_id="acme")) == [
        "MERGE INTO users",
        "MERGE INTO links",
        "UPDATE usage_daily AS",
    ]


async def test_the_writer_writes_exact_last_seen_at_close(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(record(1, user_id="alice"))
    await writer.flush()
    writer.submit(record(5, user_id="alice"))
    await writer.flush()
    assert rows(con) == [("alice", at(1), at(1), "{}")]  # lags by less than a minute
    await writer.close()
    assert rows(con) == [("alice", at(1), at(5), "{}")]


async def test_run_in_db_makes_the_writer_merge_metadata_again(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(record(1, user_id="alice", user_metadata={"tier": "free"}))
    await writer.flush()
    await writer.run_in_db(
        lambda cur: cur.execute("""UPDATE users SET metadata = '{"tier":"pro"}'""")
    )
    writer.submit(record(2, user_id="alice", user_metadata={"tier": "free"}))
    await writer.close()
    assert rows(con) == [("alice", at(1), at(2), '{"tier":"free"}')]


async def test_the_writer_writes_pending_last_seen_on_its_own_when_traffic_stops(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con, entity_refresh_s=0.05)
    await writer.start()
    writer.submit(record(1, user_id="alice"))
    await writer.flush()
    writer.submit(record(5, user_id="alice"))
    await writer.flush()
    stored: list[Any] = []
    for _ in range(1000):  # no batch comes: the task writes it 0.05 s after the last one
        stored = await writer.run_in_db(rows)
        if stored[0][2] == at(5):
            break
        await asyncio.sleep(0.01)
    assert stored == [("alice", at(1), at(5), "{}")]
    await writer.close()
