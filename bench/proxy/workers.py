"""``waystone serve --workers 2`` against one worker, on the same Redis and Postgres.

    python bench/proxy/workers.py                   # ~1 minute
    python bench/proxy/workers.py --workers 1 2 4 --connections 16 64 --duration 10

Starts, all on 127.0.0.1 in temporary directories: a ``redis-server`` and a Postgres
(the test fixtures' ``tests/servers.py``, so Postgres runs as the ``postgres`` user when
this runs as root), the fast fake provider (``provider.py``), then for each worker
count a fresh home and ``waystone serve --workers N`` on the same config: one priced
provider, ``[cluster] redis_url`` and ``[ledger] url`` set (one worker too, so that only
the number of processes differs).  wrk (``load.lua``, JSON, users rotating) runs for a
warm-up and then ``--duration`` seconds per concurrency.  Nothing is pinned: the workers
are meant to use every core, and the load generator and the fake provider share them,
which is what limits the ratio on a small machine (say so with the numbers).

Afterwards each serve is stopped with SIGTERM (its exit code is reported) and the
Postgres ledger is counted: every response wrk received has its row.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway_config import config_text
from load import Load, run_wrk
from processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer, RedisServer, _postgres_bin  # noqa: E402


def cluster_config(port: int, provider_port: int, redis_url: str, ledger_url: str) -> str:
    text = config_text(port, provider_port)
    text = text.replace("[ledger]\n", f'[ledger]\nurl = "{ledger_url}"\n', 1)
    return text + f'\n[cluster]\nredis_url = "{redis_url}"\n'


def count_rows(postgres: PostgresServer) -> int | None:
    try:
        import psycopg  # the Postgres ledger's client
    except ImportError:
        return None

    with psycopg.connect(postgres.url) as con:
        row = con.execute("SELECT count(*) FROM requests WHERE outcome = 'ok'").fetchone()
        return int(row[0]) if row else 0


def measure(
    workers: int,
    work: Path,
    provider_port: int,
    redis: RedisServer,
    postgres: PostgresServer,
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    postgres.reset()
    home = work / f"home-{workers}"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(cluster_config(port, provider_port, redis.url, postgres.url))
    log = work / f"serve-{workers}.log"
    env = {"WAYSTONE_HOME": str(home), "BENCH_PROVIDER_KEY": "sk-bench"}
    cmd = [sys.executable, "-m", "waystone_cli.main", "serve", "--workers", str(workers)]
    with log.open("ab") as out:  # not ``start``, which pins to one core
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT
        )
    responses = 0
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
        time.sleep(2.0)  # every worker up, not only the first to answer
        results = []
        for connections in args.connections:
            load = Load(connections=connections, stream=False, users=1000, groups=50,
                        inline_metadata=False)  # fmt: skip
            warm = run_wrk(port, load, args.warmup, core=1)
            result = run_wrk(port, load, args.duration, core=1)
            responses += warm.requests - warm.errors + result.requests - result.errors
            results.append(
                {
                    "workers": workers,
                    "connections": connections,
                    "rps": result.rps,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "errors": result.errors,
                }
            )
    finally:
        code = stop(proc)
    rows = count_rows(postgres)
    for r in results:
        r["exit"] = code
        r["ledger_ok_rows"] = f"{'n/a' if rows is None else rows} of {responses}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    redis_binary, bindir = "/usr/bin/redis-server", _postgres_bin()
    if bindir is None:
        raise SystemExit("Postgres is not installed (apt-get install -y postgresql)")
    # Postgres's own directory, beside (not inside) ours: as root it is handed to the
    # postgres user, who cannot enter a 0700 directory of root's.
    with (
        tempfile.TemporaryDirectory(prefix="waystone-bench-workers-") as root,
        tempfile.TemporaryDirectory(prefix="waystone-bench-pg-") as pg_root,
    ):
        work = Path(root)
        (work / "redis").mkdir()
        redis = RedisServer(redis_binary, work / "redis")
        postgres = PostgresServer(bindir, Path(pg_root))
        redis.start()
        try:
            postgres.init()
            try:
                results = run_all(args, work, redis, postgres)
            finally:
                postgres.stop("immediate")
        finally:
            redis.stop()
    print_report(results)


def run_all(
    args: argparse.Namespace, work: Path, redis: RedisServer, postgres: PostgresServer
) -> list[dict[str, object]]:
    provider_port = free_port()
    provider = start(
        [sys.executable, str(HERE / "provider.py"), "--port", str(provider_port)],
        1,
        work / "provider.log",
    )
    try:
        wait_http(f"http://127.0.0.1:{provider_port}/", provider, work / "provider.log")
        return [
            r for n in args.workers for r in measure(n, work, provider_port, redis, postgres, args)
        ]
    finally:
        stop(provider)


def print_report(results: list[dict[str, object]]) -> None:
    base = {r["connections"]: r["rps"] for r in results if r["workers"] == 1}
    print(
        "| workers | c | rps | vs 1 worker | p50 ms | p99 ms | errors | exit | ok rows of responses |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        one = base.get(r["connections"])
        ratio = f"{float(r['rps']) / float(one):.2f}×" if one else "-"  # type: ignore[arg-type]
        print(
            f"| {r['workers']} | {r['connections']} | {float(r['rps']):,.0f} | {ratio} "  # type: ignore[arg-type]
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['exit']} "
            f"| {r['ledger_ok_rows']} |"
        )


if __name__ == "__main__":
    main()
