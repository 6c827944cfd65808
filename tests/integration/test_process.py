"""The daemon as a real process: SIGTERM loses no row, SIGKILL at most the last second,
and the demo runs end to end offline."""

from __future__ import annotations

import asyncio
import os
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
    """``waystone serve`` on a free port, ready; killed at the end if still running."""
    port = free_port()
    (home / "config.toml").write_text(CONFIG.format(port=port) + extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "waystone_cli.main", "serve"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
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
    _, err = proc.communicate(timeout=30)
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
