"""The ledger on a real Postgres: the same migrations (and the refusal of a newer schema),
the writer's COPY batches with the rollup and entities, a bad row isolated, a spill
replayed exactly once, and the counters' rebuild giving DuckDB's rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PostgresServer
from tests.unit.ledger.conftest import record
from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger import spill
from waystone_cli.ledger.batch import insert_batch
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.counters import counter_rows, counters_since
from waystone_cli.ledger.migrations import MIGRATIONS
from waystone_cli.ledger.postgres import PgLedger, hide_password, open_postgres
from waystone_cli.ledger.writer import LedgerWriter


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[PgLedger]:
    con = open_postgres(postgres_server.url)
    yield con
    con.close()


def test_every_migration_is_recorded_and_a_newer_schema_is_refused(
    pg: PgLedger, postgres_server: PostgresServer
) -> None:
    names = [r[0] for r in pg.execute("SELECT name FROM _migrations ORDER BY name").fetchall()]
    assert names == sorted(m.__name__ for m in MIGRATIONS)
    pg.execute("INSERT INTO _migrations VALUES ('m099_tenants', now()::TIMESTAMP)")
    with pytest.raises(WaystoneError) as err:
        open_postgres(postgres_server.url)
    assert str(err.value) == (
        f"the ledger {postgres_server.url} was written by a newer waystone (migrations this "
        "version does not know: m099_tenants); upgrade waystone to use it"
    )


def test_a_server_that_does_not_answer_is_named_without_its_password() -> None:
    from tests.servers import free_port

    url = f"postgresql://me:secret@127.0.0.1:{free_port()}/waystone"
    with pytest.raises(WaystoneError, match=r"cannot open the Postgres ledger ") as err:
        open_postgres(url)
    assert "secret" not in str(err.value)
    assert hide_password(url).startswith("postgresql://me:***@127.0.0.1:")


async def test_the_writer_copies_rows_with_their_instance_and_keeps_the_rollup(
    pg: PgLedger, tmp_path: Path
) -> None:
    writer = LedgerWriter(pg, spill_path=tmp_path / "spill.jsonl", instance="eu-1", batch_size=7)
    await writer.start()
    for n in range(20):
        writer.submit(
            record(
                n,
                user_id=f"u{n % 3}",
                group_id="acme" if n % 2 else None,
                cost_usd=Decimal("0.00000000015") if n % 5 else None,
                rulesets=["eu"] if n == 4 else [],
                error="cut short" if n == 5 else None,
            )
        )
    await writer.close()
    rows = pg.execute(
        "SELECT count(*), count(DISTINCT instance), min(instance), sum(cost_usd), "
        "count(*) FILTER (WHERE rulesets = '{eu}'), count(error) FROM requests"
    ).fetchone()
    # 16 priced rows at 0.00000000015, rounded half up to 0.0000000002 each.
    assert rows == (20, 1, "eu-1", Decimal("0.0000000032"), 1, 1)
    rollup = pg.execute(
        "SELECT user_id, group_id, sum(requests), sum(input_tokens), sum(cost_usd), "
        "sum(unpriced) FROM usage_daily GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    assert [(u, g, int(r), int(t), c, int(p)) for u, g, r, t, c, p in rollup] == [
        ("u0", "", 4, 40, Decimal("0.0000000006"), 1),
        ("u0", "acme", 3, 30, Decimal("0.0000000004"), 1),
        ("u1", "", 3, 30, Decimal("0.0000000004"), 1),
        ("u1", "acme", 4, 40, Decimal("0.0000000008"), 0),
        ("u2", "", 3, 30, Decimal("0.0000000006"), 0),
        ("u2", "acme", 3, 30, Decimal("0.0000000004"), 1),
    ]
    assert pg.execute("SELECT id FROM users ORDER BY id").fetchall() == [("u0",), ("u1",), ("u2",)]
    assert pg.execute("SELECT user_id, group_id FROM links ORDER BY 1").fetchall() == [
        ("u0", "acme"),
        ("u1", "acme"),
        ("u2", "acme"),
    ]


async def test_a_row_postgres_refuses_is_set_aside_and_the_others_are_written(
    pg: PgLedger, tmp_path: Path
) -> None:
    # Valid Unicode, so ``rows.row_problem`` lets it through; Postgres's text cannot hold NUL.
    writer = LedgerWriter(pg, spill_path=tmp_path / "spill.jsonl")
    await writer.start()
    for n in range(10):
        writer.submit(record(n, error="nul \x00 inside" if n == 6 else None))
    await writer.close()
    ids = [r[0] for r in pg.execute("SELECT id FROM requests ORDER BY id").fetchall()]
    assert ids == [f"req-{n:06d}" for n in range(10) if n != 6]
    lines = [json.loads(line) for line in writer.rejected_path.read_text().splitlines()]
    assert [(line["id"], "CharacterNotInRepertoire" in line["_rejected"]) for line in lines] == [
        ("req-000006", True)
    ]
    assert writer.rejected == 1
    summed = pg.execute("SELECT sum(requests) FROM usage_daily").fetchone()
    assert summed is not None and int(summed[0]) == 9


async def test_a_spill_left_behind_is_replayed_once_skipping_rows_already_in(
    pg: PgLedger, tmp_path: Path
) -> None:
    path = tmp_path / "spill.jsonl"
    insert_batch(pg, [record(n) for n in range(3)])  # committed before a crash...
    # ... that left them (and two more) on the spill file.
    path.write_text("".join(spill.encode(record(n)) + "\n" for n in range(5)))
    writer = LedgerWriter(pg, spill_path=path)
    await writer.start()
    await writer.close()
    rows = pg.execute("SELECT id FROM requests ORDER BY id").fetchall()
    assert rows == [(f"req-{n:06d}",) for n in range(5)]
    summed = pg.execute("SELECT sum(requests) FROM usage_daily").fetchone()
    assert summed is not None and int(summed[0]) == 5


def test_counter_rows_are_those_of_duckdb(pg: PgLedger, tmp_path: Path) -> None:
    now = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)
    base = now.replace(tzinfo=None)
    records = [
        record(0, ts=base - timedelta(days=3, minutes=7), cost_usd=Decimal("1.5")),
        record(1, ts=base - timedelta(hours=5, minutes=1), user_id="alice", group_id="acme"),
        record(2, ts=base - timedelta(minutes=10), user_id="alice", cost_usd=Decimal("0.25")),
        record(3, ts=base - timedelta(minutes=10, seconds=5), user_id="alice"),
        record(4, ts=base - timedelta(minutes=1), outcome="blocked", input_tokens=0),
    ]
    duck = open_readwrite(tmp_path / "ledger.duckdb")
    try:
        for con in (duck, pg):
            insert_batch(con, records)
        got: list[Any] = [counter_rows(con, counters_since(now), now=now) for con in (duck, pg)]
        narrowed = [
            counter_rows(con, counters_since(now), user_id="alice", now=now) for con in (duck, pg)
        ]
    finally:
        duck.close()
    assert got[1] == got[0]
    assert len(got[0]) == 4  # the blocked row with no usage is not counted
    assert narrowed[1] == narrowed[0] and len(narrowed[0]) == 2


async def test_two_writers_on_the_same_users_keep_the_rollup_exact(
    pg: PgLedger, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Two instances upserting the same rollup rows, entities and links at once: their
    row locks are taken in key order, so neither deadlocks and no sum is lost."""
    other = open_postgres(postgres_server.url)
    writers = [
        LedgerWriter(con, spill_path=tmp_path / f"spill-{n}.jsonl", instance=f"i{n}", batch_size=50)
        for n, con in enumerate((pg, other))
    ]
    for writer in writers:
        await writer.start()
    for n in range(600):
        for w, writer in enumerate(writers):
            writer.submit(record(n, id=f"w{w}-{n}", user_id=f"u{n % 7}", group_id=f"g{n % 3}"))
        if n % 50 == 0:
            await asyncio.sleep(0)  # let both writers' batches interleave
    await asyncio.gather(*(writer.close() for writer in writers))
    other.close()
    assert [w.healthy for w in writers] == [True, True]
    totals = pg.execute(
        "SELECT (SELECT count(*) FROM requests), (SELECT sum(requests) FROM usage_daily), "
        "(SELECT sum(input_tokens) FROM usage_daily), (SELECT count(*) FROM links)"
    ).fetchone()
    assert totals is not None
    assert [int(v) for v in totals] == [1200, 1200, 12_000, 21]
    assert [(w.rejected, w.depth) for w in writers] == [(0, 0), (0, 0)]
