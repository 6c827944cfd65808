"""How fast rows get into the ledger, by insert method, in batches.

    python bench/ledger_insert.py [--rows 20000] [--batch 1000] [--users 1000] [--groups 50]
    python bench/ledger_insert.py --per-batch [--sizes 1,60,1000] [--batches 100] [--inline-meta]

Each method writes the same generated rows into a fresh ledger file and reports rows
per second:

- ``executemany``: one statement per row (only a few hundred rows: it is that slow);
- ``values``: one multi-row ``INSERT ... VALUES (?, ...), (?, ...)`` per batch;
- ``unnest``: one list parameter per column, one ``UNNEST`` per column;
- ``zip``: one list parameter per column, ``UNNEST(list_zip(...))`` (what the writer uses);
- ``batch``: a one-off write's transaction (requests + entities + links + rollup upsert);
- ``writer``: ``LedgerWriter.submit`` for every row, then ``flush()``.

``--per-batch`` measures what the writer's thread costs the gateway's one core: the
process re-runs itself under ``taskset -c 0`` (as the proxy benchmark pins the gateway)
and times each batch of the writer's transaction with ``time.process_time()`` (CPU time
of every thread, DuckDB's included).  Rows look like the proxy benchmark's traffic (user
*i* in group *i* mod ``--groups``); a warm-up batch first writes every user, group and
link, as a gateway that has been up a minute has.  Each batch stands for 0.75 s of
traffic, so 100 batches span more than the writer's once-a-minute ``last_seen`` refresh,
and every seventh batch or so also folds the rollup (every 5 s of rows, as the writer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # noqa: E402

from waystone_cli.core.records import REQUEST_COLUMNS, RequestRecord  # noqa: E402
from waystone_cli.ledger.batch import REQUEST_TYPES, insert_batch, request_columns  # noqa: E402
from waystone_cli.ledger.connection import open_readwrite  # noqa: E402
from waystone_cli.ledger.entities import KnownEntities  # noqa: E402
from waystone_cli.ledger.rollup import Folding  # noqa: E402
from waystone_cli.ledger.writer import LedgerWriter  # noqa: E402


def make_rows(n: int, users: int, groups: int, seed: int = 7) -> list[RequestRecord]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1)
    rows = []
    for i in range(n):
        group = f"g{rng.randrange(groups)}" if rng.random() < 0.6 else None
        cost = Decimal(rng.randrange(1, 10**7)) / Decimal(10**10) if rng.random() < 0.95 else None
        rows.append(
            RequestRecord(
                id=f"req-{seed}-{i:08d}",
                ts=start + timedelta(seconds=i * 0.01),
                route="chat/completions",
                status=200,
                outcome="ok",
                user_id=f"u{rng.randrange(users)}",
                group_id=group,
                provider="openai",
                requested_model="gpt-4o",
                model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
                stream=rng.random() < 0.5,
                input_tokens=rng.randrange(10, 4000),
                output_tokens=rng.randrange(1, 800),
                cached_tokens=rng.randrange(0, 100),
                cost_usd=cost,
                priced=cost is not None,
                latency_ms=rng.uniform(50, 3000),
                ttft_ms=rng.uniform(10, 500),
                overhead_ms=rng.uniform(0.1, 2.0),
                rulesets=["free-tier"] if rng.random() < 0.3 else [],
            )
        )
    return rows


def chunks(rows: list[RequestRecord], size: int) -> list[list[RequestRecord]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def timed(label: str, rows: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    rate = rows / (time.perf_counter() - started)
    print(f"{label:<12} {rows:>8} rows  {rate:>10,.0f} rows/s")
    return rate


def fresh(dir_: Path, name: str) -> duckdb.DuckDBPyConnection:
    return open_readwrite(dir_ / f"{name}.duckdb")


def method_sql(kind: str, n: int) -> str:
    cols = ", ".join(REQUEST_COLUMNS)
    if kind == "values":
        row = "(" + ", ".join("?" for _ in REQUEST_COLUMNS) + ")"
        return f"INSERT INTO requests ({cols}) VALUES " + ", ".join([row] * n)
    if kind == "unnest":
        values = ", ".join(f"UNNEST(?::{REQUEST_TYPES[c]}[])" for c in REQUEST_COLUMNS)
        return f"INSERT INTO requests ({cols}) SELECT {values}"
    lists = ", ".join(f"?::{REQUEST_TYPES[c]}[]" for c in REQUEST_COLUMNS)
    return (
        f"INSERT INTO requests ({cols}) SELECT UNNEST(row, recursive := true) "
        f"FROM (SELECT UNNEST(list_zip({lists})) AS row)"
    )


def run_method(
    con: duckdb.DuckDBPyConnection, kind: str, batches: list[list[RequestRecord]]
) -> None:
    for batch in batches:
        columns = request_columns(batch)
        con.begin()
        if kind == "executemany":
            row = "(" + ", ".join("?" for _ in REQUEST_COLUMNS) + ")"
            con.executemany(
                f"INSERT INTO requests VALUES {row}", [list(r) for r in zip(*columns, strict=True)]
            )
        elif kind == "values":
            flat = [value for row in zip(*columns, strict=True) for value in row]
            con.execute(method_sql(kind, len(batch)), flat)
        else:
            con.execute(method_sql(kind, len(batch)), columns)
        con.commit()


async def run_writer(con: duckdb.DuckDBPyConnection, rows: list[RequestRecord], batch: int) -> None:
    writer = LedgerWriter(con, batch_size=batch, queue_size=len(rows) + 1)
    await writer.start()
    for row in rows:
        writer.submit(row)
    await writer.close()


def traffic_rows(
    first: int, n: int, start: datetime, span: timedelta, args: argparse.Namespace
) -> list[RequestRecord]:
    """Rows ``first`` .. ``first + n - 1`` of the proxy benchmark's traffic, spread over ``span``."""
    rows = []
    for i in range(first, first + n):
        user = i % args.users
        cost = Decimal(1000 + i % 997) / Decimal(10**9)
        meta = args.inline_meta
        rows.append(
            RequestRecord(
                id=f"req-{i:09d}",
                ts=start + span * ((i - first) / n),
                route="chat/completions",
                status=200,
                outcome="ok",
                user_id=f"u{user}",
                group_id=f"g{user % args.groups}",
                provider="bench",
                requested_model="gpt-4o-mini",
                model="gpt-4o-mini",
                stream=i % 2 == 1,
                input_tokens=25 + i % 7,
                output_tokens=12,
                cost_usd=cost,
                latency_ms=1.5,
                ttft_ms=1.0,
                overhead_ms=0.4,
                user_metadata={"tier": "free", "beta": user % 3 == 0} if meta else None,
                group_metadata={"region": "eu"} if meta else None,
            )
        )
    return rows


class RowClock:
    """The writer's refresh clock, following the rows' time rather than the bench's."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pin_to_core_zero() -> None:
    """Re-run this process under ``taskset -c 0`` unless it already is pinned there."""
    if os.sched_getaffinity(0) != {0}:
        os.execvp("taskset", ["taskset", "-c", "0", sys.executable, *sys.argv])


def per_batch(args: argparse.Namespace) -> None:
    pin_to_core_zero()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"duckdb {duckdb.__version__}, pinned to core 0, {args.users} users in "
        f"{args.groups} groups, inline metadata {'on' if args.inline_meta else 'off'}, "
        f"settings: {', '.join(args.set) or 'defaults'}"
    )
    print(
        f"{'rows/batch':>10} {'batches':>8} {'cpu ms/batch':>13} {'median':>8} "
        f"{'p90':>8} {'wall ms':>8} {'rows/cpu-s':>11} {'RSS MB':>7}"
    )
    step = timedelta(seconds=0.75)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            con = fresh(Path(tmp), f"per-batch-{size}")
            for setting in args.set:
                con.execute(f"SET {setting}")
            start = datetime(2026, 3, 1)
            # Warm-up: every user, group and link exists, as after a minute of traffic.
            warm = traffic_rows(0, args.users, start, step, args)
            # The writer's memory of known entities; its refresh clock runs on the rows' time.
            clock = RowClock()
            known = KnownEntities(clock=clock)
            folding = Folding(clock=clock)  # folds every 5 s of rows, as the writer does
            insert_batch(con, warm, known, folding)
            first, cpu, wall = args.users, [], []
            for b in range(args.batches):
                rows = traffic_rows(first, size, start + step * (b + 1), step, args)
                first += size
                clock.now = step.total_seconds() * (b + 1)
                c0, w0 = time.process_time(), time.perf_counter()
                insert_batch(con, rows, known, folding)
                cpu.append((time.process_time() - c0) * 1000)
                wall.append((time.perf_counter() - w0) * 1000)
            con.close()
            mean = statistics.fmean(cpu)
            p90 = statistics.quantiles(cpu, n=10)[-1]
            print(
                f"{size:>10} {len(cpu):>8} {mean:>13.2f} {statistics.median(cpu):>8.2f} "
                f"{p90:>8.2f} {statistics.fmean(wall):>8.2f} {size / mean * 1000:>11,.0f} "
                f"{rss_mb():>7.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--per-batch", action="store_true", help="pinned CPU ms per batch")
    parser.add_argument("--sizes", default="1,60,1000", help="rows per batch (--per-batch)")
    parser.add_argument("--batches", type=int, default=100, help="batches per size (--per-batch)")
    parser.add_argument("--inline-meta", action="store_true", help="metadata on every row")
    parser.add_argument(
        "--set", action="append", default=[], help="a DuckDB setting, e.g. threads=1 (repeat)"
    )
    args = parser.parse_args()
    if args.per_batch:
        per_batch(args)
        return
    rows = make_rows(args.rows, args.users, args.groups)
    batches = chunks(rows, args.batch)
    small = chunks(rows[: min(500, args.rows)], args.batch)
    print(f"duckdb {duckdb.__version__}, batches of {args.batch}, {args.users} users")
    with tempfile.TemporaryDirectory() as tmp:
        dir_ = Path(tmp)
        timed(
            "executemany",
            sum(map(len, small)),
            lambda: run_method(fresh(dir_, "m"), "executemany", small),
        )
        timed("values", len(rows), lambda: run_method(fresh(dir_, "v"), "values", batches))
        timed("unnest", len(rows), lambda: run_method(fresh(dir_, "u"), "unnest", batches))
        timed("zip", len(rows), lambda: run_method(fresh(dir_, "z"), "zip", batches))
        con = fresh(dir_, "b")
        timed("batch", len(rows), lambda: [insert_batch(con, b) for b in batches] and None)
        con = fresh(dir_, "w")
        timed("writer", len(rows), lambda: asyncio.run(run_writer(con, rows, args.batch)))


if __name__ == "__main__":
    main()
