"""The ledger in Postgres: ingest through the writer's batches, and ``usage top`` on 10 M rows.

    python bench/postgres_ledger.py ingest [--rows 200000] [--rounds 3]
    python bench/postgres_ledger.py top [--rows 10000000] [--runs 5]

Both start a Postgres 15 of their own (initdb in a temporary directory, a free loopback
port, as the test fixtures do) with its durable defaults: ``fsync`` and
``synchronous_commit`` on, unlike the test fixture's ``fsync=off``.

``ingest`` writes the generated rows of ``bench/ledger_insert.py`` (1,000 users, 50
groups), except that a user's grouped requests all name one group, as real traffic
does (there a user changes groups seldom, and a new link is written once), through ``batch.insert_batch``, the writer's transaction: the binary COPY
of the rows, the rollup upsert (one ``INSERT … ON CONFLICT`` per batch), the entity
statements of what the writer does not know yet, with the BRIN and the unique id index
maintained (the hash one on ``id``, see ``m001_requests``).  Batches of 1,000 rows (the default ``[ledger] batch_size``) and of 5,000
alternate round by round in one run (A/B interleaved), each into a fresh table; rows
per second are wall-clock from the first row handed over to the last commit.

``top`` seeds ``--rows`` rows with ``bench/seed_ledger.py`` into a DuckDB file, copies
the same rows into Postgres (DuckDB writes a CSV file, Postgres's ``COPY`` reads it),
builds the rollup on both, then times ``waystone usage top --since 30d`` as a whole
command against each, alternating (``[ledger] url`` in the config for Postgres).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ledger_insert import chunks, make_rows  # noqa: E402
from tests.servers import PostgresServer, _postgres_bin, _wait_port  # noqa: E402
from waystone_cli.ledger.batch import insert_batch  # noqa: E402
from waystone_cli.ledger.entities import KnownEntities  # noqa: E402
from waystone_cli.ledger.postgres import PgLedger, open_postgres  # noqa: E402


class DurablePostgres(PostgresServer):
    """The fixtures' server with Postgres's durable defaults (no ``fsync=off``)."""

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "postgres.log"), "-w", "start",
        )  # fmt: skip
        _wait_port(self.port, None, "postgres")


def start_postgres(root: Path) -> DurablePostgres:
    bindir = _postgres_bin()
    if bindir is None:
        sys.exit("postgres is not installed (apt-get install -y postgresql)")
    server = DurablePostgres(bindir, root)
    server.init()
    return server


def _fresh(con: PgLedger) -> None:
    for table in ("requests", "usage_daily", "users", "groups", "links"):
        con.execute(f"TRUNCATE {table}")
    con.execute("VACUUM ANALYZE requests")


def ingest_once(con: PgLedger, rows: list, batch: int) -> float:  # type: ignore[type-arg]
    _fresh(con)
    known = KnownEntities()
    known.load(con)
    start = time.perf_counter()
    for part in chunks(rows, batch):
        insert_batch(con, part, known, None, "bench-1")
    elapsed = time.perf_counter() - start
    stored = con.execute("SELECT count(*) FROM requests").fetchone()
    assert stored is not None and stored[0] == len(rows), stored
    return len(rows) / elapsed


def ingest(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="waystone-pg-bench-") as root:
        server = start_postgres(Path(root))
        try:
            con = open_postgres(server.url)
            rows = make_rows(args.rows, 1000, 50)
            for row in rows:  # each user in one group, as in real traffic (see the docstring)
                if row.group_id is not None:
                    row.group_id = f"g{int(row.user_id[1:]) % 50}"
            ingest_once(con, rows[:5000], 1000)  # warm-up: connections, caches, plans
            results: dict[int, list[float]] = {1000: [], 5000: []}
            for _ in range(args.rounds):
                for size in results:
                    results[size].append(ingest_once(con, rows, size))
            con.close()
        finally:
            server.stop()
    print(f"{args.rows:,} rows per round, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    for size, rates in results.items():
        print(
            f"batch {size:>5}: median {statistics.median(rates):>9,.0f} rows/s "
            f"(rounds: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    ratio = statistics.median(results[5000]) / statistics.median(results[1000])
    print(f"batch 5000 / batch 1000: {ratio:.2f}x")


def _waystone() -> list[str]:
    script = shutil.which("waystone")
    return [script] if script else [sys.executable, "-m", "waystone_cli.main"]


def _time(home: Path, runs: int) -> float:
    env = {**os.environ, "WAYSTONE_HOME": str(home), "COLUMNS": "120"}
    start = time.perf_counter()
    subprocess.run(
        [*_waystone(), "usage", "top", "--since", "30d"],
        env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    return time.perf_counter() - start


def top(args: argparse.Namespace) -> None:
    from waystone_cli.ledger.rollup import rebuild_rollup

    with tempfile.TemporaryDirectory(prefix="waystone-pg-bench-") as root:
        base = Path(root)
        base.chmod(0o755)  # the server (the postgres user) reaches its folder and the CSV
        duck_home, pg_home = base / "duck", base / "pg"
        duck_home.mkdir()
        pg_home.mkdir()
        (base / "server").mkdir()
        env = {**os.environ, "WAYSTONE_HOME": str(duck_home)}
        seed = ROOT / "bench" / "seed_ledger.py"
        subprocess.run([sys.executable, str(seed), "--rows", str(args.rows)], env=env, check=True)
        server = start_postgres(base / "server")
        try:
            t0 = time.perf_counter()
            csv = base / "requests.csv"
            _export_csv(duck_home / "ledger.duckdb", csv)
            con = open_postgres(server.url)
            con.execute(f"COPY requests ({_SEED_COLUMNS}) FROM '{csv}' (FORMAT csv)")
            csv.unlink()
            rebuild_rollup(con)
            con.execute("VACUUM ANALYZE")
            count = con.execute("SELECT count(*) FROM requests").fetchone()
            con.close()
            print(f"copied {count[0] if count else 0:,} rows into Postgres and rolled them up "
                  f"in {time.perf_counter() - t0:.0f} s")  # fmt: skip
            (pg_home / "config.toml").write_text(f'[ledger]\nurl = "{server.url}"\n')
            walls: dict[str, list[float]] = {"duckdb": [], "postgres": []}
            for _ in range(args.runs):
                walls["duckdb"].append(_time(duck_home, args.runs))
                walls["postgres"].append(_time(pg_home, args.runs))
        finally:
            server.stop()
    print(f"waystone usage top --since 30d on {args.rows:,} rows, load {os.getloadavg()[0]:.2f}")
    for name, wall in walls.items():
        print(f"{name:>9}: median {statistics.median(wall):.2f} s, best {min(wall):.2f} s")
    ratio = statistics.median(walls["postgres"]) / statistics.median(walls["duckdb"])
    print(f"postgres / duckdb: {ratio:.2f}x")


_SEED_COLUMNS = (
    "id, ts, user_id, group_id, provider, requested_model, model, route, stream, status, "
    "outcome, input_tokens, output_tokens, cached_tokens, cost_usd, priced, latency_ms, "
    "ttft_ms, overhead_ms"
)


def _export_csv(ledger: Path, out: Path) -> None:
    import duckdb

    con = duckdb.connect(str(ledger), read_only=True)
    try:
        con.execute(
            f"COPY (SELECT {_SEED_COLUMNS} FROM requests ORDER BY ts) TO '{out}' "
            "(FORMAT csv, HEADER false)"
        )
    finally:
        con.close()
    out.chmod(0o644)  # the server (the postgres user) reads it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("ingest")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("top")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ingest(args) if args.what == "ingest" else top(args)


if __name__ == "__main__":
    main()
