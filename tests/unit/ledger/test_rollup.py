"""The daily rollup: exact sums by hand, and the writer's upserts and folds equal a rebuild."""

from __future__ import annotations

import asyncio
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from tests.unit.ledger.conftest import record
from waystone_cli.core.records import REQUEST_COLUMNS
from waystone_cli.ledger.batch import REQUEST_TYPES, insert_batch
from waystone_cli.ledger.rollup import Folding, quantize_cost, rebuild_rollup
from waystone_cli.ledger.writer import LedgerWriter

# The columns of ``m004_daily_rollup``; ``cache_write_tokens`` is read apart.
ROLLUP = (
    "SELECT * EXCLUDE (cache_write_tokens) FROM usage_daily "
    "ORDER BY day, user_id, group_id, provider, model"
)


def rows(con: duckdb.DuckDBPyConnection) -> list[Any]:
    return con.execute(ROLLUP).fetchall()


def test_a_batch_adds_exact_sums_with_unpriced_counted_apart(
    con: duckdb.DuckDBPyConnection,
) -> None:
    late = datetime(2026, 3, 1, 23, 59, 59)
    insert_batch(
        con,
        [
            record(
                1, user_id="alice", input_tokens=100, output_tokens=20, cost_usd=Decimal("0.0015")
            ),
            record(
                2,
                user_id="alice",
                input_tokens=50,
                output_tokens=5,
                cached_tokens=40,
                cache_write_tokens=6,
                reasoning_tokens=3,
                cost_usd=Decimal("0.00000000005"),
            ),
            record(
                3, user_id="alice", input_tokens=7, output_tokens=1, cost_usd=None, priced=False
            ),
            record(4, id="late", ts=late, user_id="alice", cost_usd=Decimal("1")),
            record(5, ts=late + timedelta(seconds=1), group_id="acme", provider=None, model=None),
        ],
    )
    # 0.00000000005 rounds half up to the ledger's 10 places: 0.0000000001.  Row 5 has no
    # cost at all, so it is unpriced like row 3.
    assert rows(con) == [
        (date(2026, 3, 1), "alice", "", "openai", "gpt-4o", 4, 167, 28, 40, 3,
         Decimal("1.0015000001"), 1),
        (date(2026, 3, 2), "", "acme", "", "", 1, 10, 2, 0, 0, Decimal("0E-10"), 1),
    ]  # fmt: skip
    assert con.execute(
        "SELECT day, cache_write_tokens FROM usage_daily ORDER BY day"
    ).fetchall() == [(date(2026, 3, 1), 6), (date(2026, 3, 2), 0)]


def test_a_second_batch_adds_to_the_same_day(con: duckdb.DuckDBPyConnection) -> None:
    insert_batch(con, [record(1, user_id="u", cost_usd=Decimal("0.25"))])
    insert_batch(
        con,
        [record(2, user_id="u", cost_usd=None), record(3, user_id="u", cost_usd=Decimal("0.5"))],
    )
    assert rows(con) == [
        (date(2026, 3, 1), "u", "", "openai", "gpt-4o", 3, 30, 6, 0, 0, Decimal("0.7500000000"), 1)
    ]


def test_a_batch_of_old_and_new_keys_updates_one_and_inserts_the_other(
    con: duckdb.DuckDBPyConnection,
) -> None:
    insert_batch(con, [record(1, user_id="u", cost_usd=Decimal("0.25"))])
    insert_batch(
        con,
        [
            record(2, user_id="u", cost_usd=Decimal("0.5")),
            record(3, user_id="v", model="o3", cost_usd=None),
            record(4, user_id="v", model="o3", cost_usd=Decimal("0.125")),
        ],
    )
    assert rows(con) == [
        (date(2026, 3, 1), "u", "", "openai", "gpt-4o", 2, 20, 4, 0, 0, Decimal("0.7500000000"), 0),
        (date(2026, 3, 1), "v", "", "openai", "o3", 2, 20, 4, 0, 0, Decimal("0.1250000000"), 1),
    ]  # fmt: skip


async def test_the_writers_rollup_equals_a_rebuild_after_many_batches(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rng = random.Random(3)
    writer = LedgerWriter(con, batch_size=97)
    await writer.start()
    expected_cost = Decimal(0)
    for n in range(3000):
        cost = None if rng.random() < 0.1 else Decimal(rng.randrange(10**9)) / Decimal(10**13)
        expected_cost += quantize_cost(cost) or 0
        writer.submit(
            record(
                n,
                ts=datetime(2026, 3, 1) + timedelta(minutes=37 * n),
                user_id=rng.choice(["alice", "bob", None]),
                group_id=rng.choice(["acme", None]),
                model=rng.choice(["gpt-4o", "gpt-4o-mini", None]),
                input_tokens=rng.randrange(5000),
                output_tokens=rng.randrange(900),
                cached_tokens=rng.randrange(50),
                reasoning_tokens=rng.randrange(20),
                cost_usd=cost,
            )
        )
        if n % 500 == 0:
            await writer.flush()
    await writer.close()
    incremental = rows(con)
    assert len(incremental) > 300
    assert con.execute("SELECT sum(requests), sum(cost_usd) FROM usage_daily").fetchone() == (
        3000,
        expected_cost,
    )
    rebuild_rollup(con)
    assert rows(con) == incremental


def test_rebuild_since_a_day_leaves_earlier_days_alone(con: duckdb.DuckDBPyConnection) -> None:
    insert_batch(
        con,
        [
            record(1, ts=datetime(2026, 3, 1, 10), user_id="a"),
            record(2, ts=datetime(2026, 3, 2, 10), user_id="a"),
            record(3, ts=datetime(2026, 3, 3, 10), user_id="a"),
        ],
    )
    con.execute("UPDATE usage_daily SET requests = 99")
    con.execute("DELETE FROM requests WHERE id = 'req-000003'")
    rebuild_rollup(con, since=date(2026, 3, 2))
    assert [(r[0], r[5]) for r in rows(con)] == [(date(2026, 3, 1), 99), (date(2026, 3, 2), 1)]


def test_a_failed_rebuild_leaves_the_rollup_as_it_was(con: duckdb.DuckDBPyConnection) -> None:
    insert_batch(con, [record(1, user_id="a")])
    before = rows(con)
    con.execute("ALTER TABLE requests RENAME TO requests_gone")
    try:
        rebuild_rollup(con)
    except duckdb.CatalogException:
        pass
    else:  # pragma: no cover - the rebuild must fail without its table
        raise AssertionError("rebuild_rollup should have failed")
    assert rows(con) == before


def test_the_insert_types_match_the_requests_table(con: duckdb.DuckDBPyConnection) -> None:
    described = con.execute("DESCRIBE requests").fetchall()
    # ... and ``seq``, which the writer numbers rows with (not a field of the record).
    # Inserts name their columns, so the table's order (later columns after ``seq``)
    # need not be the record's.
    assert {r[0]: r[1] for r in described} == {
        **{c: REQUEST_TYPES[c].replace(", ", ",") for c in REQUEST_COLUMNS},
        "seq": "BIGINT",
        "instance": "VARCHAR",  # the writer's name (m011_instance)
    }


# --- folding: the writer's rows reach the rollup every few seconds ------------------


def fold_state(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """(rows in the rollup, the fold mark, the highest seq)."""
    row = con.execute(
        "SELECT (SELECT COALESCE(sum(requests), 0) FROM usage_daily), "
        "(SELECT folded_seq FROM rollup_fold), (SELECT max(seq) FROM requests)"
    ).fetchone()
    assert row is not None
    return tuple(row)


async def test_the_writer_folds_when_due_and_when_it_stops(
    con: duckdb.DuckDBPyConnection,
) -> None:
    writer = LedgerWriter(con, fold_every_s=3600)  # not due while the test runs
    await writer.start()
    for n in range(10):
        writer.submit(record(n, user_id="u"))
    await writer.flush()
    assert fold_state(con) == (0, 0, 10)  # on disk and numbered, not folded yet
    await writer.close()
    assert fold_state(con) == (10, 10, 10)
    incremental = rows(con)
    rebuild_rollup(con)
    assert rows(con) == incremental


async def test_an_idle_writer_folds_on_its_own(con: duckdb.DuckDBPyConnection) -> None:
    writer = LedgerWriter(con, fold_every_s=0.2)
    await writer.start()
    writer.submit(record(1, user_id="u"))
    await writer.flush()
    # Read on the writer's thread: the connection refuses a second caller meanwhile.
    for _ in range(100):
        if (await writer.run_in_db(fold_state))[0] == 1:
            break
        await asyncio.sleep(0.05)
    assert await writer.run_in_db(fold_state) == (1, 1, 1)
    await writer.close()


async def test_rows_left_unfolded_by_a_crash_are_folded_by_the_next_writer(
    con: duckdb.DuckDBPyConnection,
) -> None:
    crashed = Folding(every_s=3600)
    insert_batch(con, [record(n, user_id="u") for n in range(5)], folding=crashed)
    assert fold_state(con) == (0, 0, 5)
    writer = LedgerWriter(con, fold_every_s=3600)
    await writer.start()
    writer.submit(record(5, user_id="v"))
    await writer.flush()  # the first batch folds what the crash left, and itself
    assert fold_state(con) == (6, 6, 6)
    await writer.close()


def test_a_rebuild_folds_first_so_older_unfolded_rows_are_kept(
    con: duckdb.DuckDBPyConnection,
) -> None:
    folding = Folding(every_s=3600)
    insert_batch(con, [record(1, ts=datetime(2026, 3, 1, 10), user_id="a")], folding=folding)
    insert_batch(con, [record(2, ts=datetime(2026, 3, 3, 10), user_id="a")], folding=folding)
    rebuild_rollup(con, since=date(2026, 3, 2))  # as pruning does, from its first day
    assert [(r[0], r[5]) for r in rows(con)] == [(date(2026, 3, 1), 1), (date(2026, 3, 3), 1)]
    assert fold_state(con) == (2, 2, 2)


def test_one_off_writes_go_into_the_rollup_at_once_without_a_seq(
    con: duckdb.DuckDBPyConnection,
) -> None:
    insert_batch(con, [record(1, user_id="a")])
    assert fold_state(con) == (1, 0, None)
