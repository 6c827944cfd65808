"""The daemon as a real process: SIGTERM loses no row, SIGKILL at most the last second,
and the demo runs end to end offline."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import openai
import pytest

from waystone_cli.demo import free_port
from waystone_cli.ledger.connection import open_readwrite

pytestmark = pytest.mark.slow

CONFIG = """\
[server]
port = {port}

[providers.local]
kind = "mock"
models = ["mock-small"]
"""


_STDERR = "serve.stderr"


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("daemon not ready")


@contextmanager
def _serving(home: Path, extra: str = "") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``waystone serve`` on a free port, ready; killed at the end if still running.

    Its stderr (the request log) goes to ``_STDERR`` in the home, not to a pipe: a pipe
    that nobody reads while requests are sent fills up and blocks the daemon."""
    port = free_port()
    (home / "config.toml").write_text(CONFIG.format(port=port) + extra)
    with (home / _STDERR).open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "waystone_cli.main", "serve"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_ready(port, proc)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def daemon(waystone_home: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with _serving(waystone_home) as running:
        yield running


async def _send(port: int, count: int) -> None:
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    sem = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with sem:
            messages: Any = [{"role": "user", "content": f"hello {i}"}]
            metadata = {"waystone": f'{{"user": "u{i % 7}"}}'}
            if i % 2:
                await client.chat.completions.create(
                    model="mock-small", messages=messages, metadata=metadata
                )
                return
            stream = await client.chat.completions.create(
                model="mock-small", messages=messages, metadata=metadata, stream=True
            )
            # Read to the end: a stream left unread when the client closes is cut short,
            # and its row says client_closed, not ok.
            async for _ in stream:
                pass

    await asyncio.gather(*(one(i) for i in range(count)))
    await client.close()


def _count(home: Path) -> int:
    con = duckdb.connect(str(home / "ledger.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM requests WHERE outcome = 'ok'").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def test_sigterm_after_200_requests_leaves_200_rows(
    daemon: tuple[subprocess.Popen[bytes], int], waystone_home: Path
) -> None:
    proc, port = daemon
    asyncio.run(_send(port, 200))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    err = (waystone_home / _STDERR).read_bytes()
    assert proc.returncode == 0
    assert _count(waystone_home) == 200
    # Log lines are written in batches (Observer.request_done): a stop leaves none behind.
    lines = [line for line in err.decode().splitlines() if " waystone.request " in line]
    assert len(lines) == 200 and all("status=200 outcome=ok" in line for line in lines)


def test_sigkill_loses_at_most_the_last_second(
    daemon: tuple[subprocess.Popen[bytes], int], waystone_home: Path
) -> None:
    proc, port = daemon
    asyncio.run(_send(port, 50))
    # Metrics are counted in batches (Observer.request_done): a scrape waits for none.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    ok = 'waystone_requests_total{outcome="ok",route="chat/completions",status="200"} 50.0'
    assert ok in metrics
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _count(waystone_home) == 50


def test_demo_runs_offline_and_prints_the_usage_table(waystone_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "waystone_cli.main", "demo", "--requests", "12"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sent 12 requests" in result.stdout
    assert "alice" in result.stdout and "acme" in result.stdout


SERVED_CONFIG = (
    CONFIG
    + """
[providers.up]
base_url = "http://127.0.0.1:9/v1"
api_key = "env:WAYSTONE_TEST_UNSET_KEY"

[rules.cap]
action = "block"
rate = {{ rpm = 5 }}

[rulesets.free]
when = "user.tier = free"
rules = ["cap"]
"""
)


def test_serve_says_what_it_serves_and_a_second_serve_names_the_first(
    waystone_home: Path,
) -> None:
    port = free_port()
    (waystone_home / "config.toml").write_text(SERVED_CONFIG.format(port=port))
    env = {k: v for k, v in os.environ.items() if k != "WAYSTONE_TEST_UNSET_KEY"}
    serve = [sys.executable, "-m", "waystone_cli.main", "serve"]
    proc = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(port, proc)
        second = subprocess.run(
            [*serve, "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (second.returncode, second.stdout, second.stderr) == (
            1,
            "",
            f"error: already serving this home (PID {proc.pid}, http://127.0.0.1:{port}/v1)\n",
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.decode() == (
        f"waystone 0.1.0 serving http://127.0.0.1:{port}/v1\n"
        f"  config     {waystone_home / 'config.toml'}\n"
        f"  ledger     {waystone_home / 'ledger.duckdb'}\n"
        f"  socket     {waystone_home / 'admin.sock'}\n"
        "  providers  local (mock): mock-small\n"
        "             up: any model\n"
        "  rulesets   free (when user.tier = free; cap)\n"
        "  auth       no gateway keys: loopback only\n"
    )
    assert err.decode().splitlines()[0] == (
        "warning: providers.up.api_key: environment variable WAYSTONE_TEST_UNSET_KEY is not set "
        '(calls to provider "up" will fail)'
    )


def test_serve_refuses_a_bad_port_before_touching_the_home(waystone_home: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "waystone_cli.main", "serve", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (bad.returncode, bad.stdout, bad.stderr) == (
        2,
        "",
        "error: Invalid value for '--port': 99999 is not in the range 1<=x<=65535. "
        "(see 'waystone serve --help')\n",
    )
    assert not (waystone_home / "ledger.duckdb").exists()


def test_demo_shows_a_downgrade_a_block_an_explanation_and_what_to_try_next(
    waystone_home: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "waystone_cli.main", "demo", "--requests", "6", "--keep"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert (
        "alice (acme) asks for mock-large: 200 from local/mock-small "
        "(ruleset free-tier changed the model)"
    ) in out
    assert "bob asks for mock-large: 200 from local/mock-large (as asked)" in out
    assert (
        'erin asks for mock-large: 403, blocked by ruleset "trial", rule "no-large-on-trial": '
        "trial accounts cannot use mock-large"
    ) in out
    assert "$ waystone rules explain --user alice --model mock-large" in out
    assert "Verdict: allowed, model local/mock-small" in out
    assert (
        "bob asks for mock-small: 200 from local/mock-small, "
        '"This is a mock answer to: Write …", 54 input tokens (14 uncached, 27 read from '
        "the cache, 13 written to it), 51 output tokens"
    ) in out
    assert "all 6 users         10" in out  # 3 shown one by one, 1 Anthropic-style, 6 more
    try_next = out[out.index("Try next:") :].splitlines()[1:]
    assert len(try_next) == 3
    home = try_next[0].split()[0].removeprefix("WAYSTONE_HOME=")
    try:
        show = subprocess.run(
            [sys.executable, "-m", "waystone_cli.main", "usage", "show", "user", "alice"],
            env={**os.environ, "WAYSTONE_HOME": home},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (show.returncode, show.stdout.splitlines()[0]) == (
            0,
            "User alice, the first request → now (UTC)",
        )
    finally:
        shutil.rmtree(home)


def test_the_daemons_ledger_files_are_its_owners_only(waystone_home: Path) -> None:
    ledger = waystone_home / "data" / "ledger.duckdb"
    open_readwrite(ledger).close()  # closed with a checkpoint: the daemon makes a new WAL
    wal = ledger.with_name("ledger.duckdb.wal")
    assert not wal.exists()
    with _serving(waystone_home, f'\n[ledger]\npath = "{ledger}"\n') as (proc, port):
        asyncio.run(_send(port, 10))
        deadline = time.monotonic() + 10
        while not wal.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wal.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert (ledger.parent.stat().st_mode & 0o777, ledger.stat().st_mode & 0o777) == (0o700, 0o600)
