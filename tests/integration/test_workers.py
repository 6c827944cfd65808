"""``waystone serve --workers 2`` as a real process tree, on a real Redis and Postgres.

Both workers answer on one port, a SIGHUP to the parent reloads the config in each, and
a SIGTERM stops them all and the parent exits 0.  Without the shared servers, more
than one worker is refused before anything starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PostgresServer, RedisServer
from waystone_cli.demo import free_port

pytestmark = pytest.mark.slow

CONFIG = """\
[server]
port = {port}

[providers.local]
kind = "mock"
models = ["{model}"]

[cluster]
redis_url = "{redis}"

[ledger]
url = "{ledger}"
"""

SERVE = [sys.executable, "-m", "waystone_cli.main", "serve"]


def _chat(port: int, model: str) -> int:
    """One request on a connection of its own (so the kernel may pick either worker)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _rows(ledger_url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg  # the postgres ledger's client

    with psycopg.connect(ledger_url) as con:
        return list(con.execute(sql).fetchall())


def _until(condition: Any, what: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the parent exited with {proc.returncode}"
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds:.0f} s: {what}")


@contextmanager
def _workers(home: Path, config: str) -> Iterator[subprocess.Popen[bytes]]:
    (home / "config.toml").write_text(config)
    with (home / "serve.stderr").open("wb") as err:
        env = {**os.environ, "WAYSTONE_INSTANCE": "it"}
        proc = subprocess.Popen([*SERVE, "--workers", "2"], env=env, stdout=err, stderr=err)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _by_instance(ledger_url: str, model: str) -> dict[str, int]:
    rows = _rows(
        ledger_url,
        f"SELECT instance, count(*) FROM requests WHERE model = '{model}' AND status = 200 "
        "GROUP BY instance",
    )
    return {str(name): int(count) for name, count in rows}


def test_two_workers_answer_reload_on_sighup_and_stop_on_sigterm(
    waystone_home: Path, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    port = free_port()
    urls = {"redis": redis_server.url, "ledger": postgres_server.url}
    config = CONFIG.format(port=port, model="mock-small", **urls)
    with _workers(waystone_home, config) as proc:
        _until(lambda: _ready(port), "ready", proc)
        names = {"it-w1", "it-w2"}
        _until(
            lambda: (
                {r[0] for r in _rows(postgres_server.url, "SELECT name FROM instances")} == names
            ),
            "both workers' heartbeats",
            proc,
        )
        assert {_chat(port, "mock-small") for _ in range(40)} == {200}
        _until(
            lambda: set(_by_instance(postgres_server.url, "mock-small")) == names,
            "rows from both workers",
            proc,
        )

        # The same size, inode and time: the file watch sees no change, only SIGHUP does.
        path = waystone_home / "config.toml"
        stat = path.stat()
        with path.open("r+") as f:
            f.write(CONFIG.format(port=port, model="mock-large", **urls))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert _chat(port, "mock-large") == 404
        proc.send_signal(signal.SIGHUP)
        _until(
            lambda: {_chat(port, "mock-large") for _ in range(20)} == {200},
            "mock-large served by every worker",
            proc,
        )
        _until(
            lambda: set(_by_instance(postgres_server.url, "mock-large")) == names,
            "mock-large rows from both workers",
            proc,
        )
        pids = [r[0] for r in _rows(postgres_server.url, "SELECT pid FROM instances")]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_two_workers_without_the_shared_servers_exit_2_naming_the_keys(
    waystone_home: Path,
) -> None:
    (waystone_home / "config.toml").write_text('[providers.local]\nkind = "mock"\n')
    run = subprocess.run(
        [*SERVE, "--workers", "2"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (run.returncode, run.stdout, run.stderr) == (
        2,
        "",
        "error: serve --workers 2 needs [cluster] redis_url and [ledger] url: the workers "
        "share their counters through Redis and their ledger in Postgres (one DuckDB file "
        "opens in one process only)\n",
    )
    assert sorted(p.name for p in waystone_home.iterdir()) == ["config.toml"]


async def _get_status(port: int, model: str) -> int:
    import aiohttp

    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as resp,
    ):
        return resp.status


async def test_a_real_worker_under_the_supervisor_serves_reloads_and_stops(
    waystone_home: Path,
) -> None:
    """One real ``serve --worker 1`` (a DuckDB home: one worker needs no shared server)
    under the supervisor, which holds the home's lock as ``serve --workers`` does."""
    import asyncio

    import duckdb

    from daemon.process.instance import serving
    from daemon.process.workers import Supervisor, WorkerSpec

    port = free_port()
    single = '[server]\nport = {port}\n\n[providers.local]\nkind = "mock"\nmodels = ["{m}"]\n'
    path = waystone_home / "config.toml"
    path.write_text(single.format(port=port, m="mock-small"))
    spec = WorkerSpec(
        name="it-w1",
        command=[*SERVE, "--worker", "1"],
        env={**os.environ, "WAYSTONE_WORKER": "it-w1"},
    )
    sup = Supervisor([spec], stop_timeout_s=30)
    ledger = waystone_home / "ledger.duckdb"
    with serving(ledger, f"http://127.0.0.1:{port}/v1", workers=1):
        running = asyncio.create_task(sup.run(signals=False))
        for _ in range(300):
            if await asyncio.to_thread(_ready, port):
                break
            assert not running.done()
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker was not ready within 30 s")
        assert await _get_status(port, "mock-small") == 200
        stat = path.stat()
        with path.open("r+") as f:
            f.write(single.format(port=port, m="mock-large"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert await _get_status(port, "mock-large") == 404
        sup.forward(signal.SIGHUP)
        for _ in range(100):
            if await _get_status(port, "mock-large") == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("SIGHUP did not reload the worker's config within 10 s")
        sup.stop()
        assert await asyncio.wait_for(running, 60) == 0
    con = duckdb.connect(str(ledger), read_only=True)
    try:
        assert con.execute("SELECT model, status FROM requests ORDER BY ts").fetchall()[-1] == (
            "mock-large",
            200,
        )
        assert con.execute("SELECT name, url FROM instances").fetchall() == [
            ("it-w1", f"http://127.0.0.1:{port}/v1")
        ]
    finally:
        con.close()
