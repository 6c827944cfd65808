"""The supervisor with stand-in workers: small Python processes that write what they see."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from daemon.process.workers import Backoff, Supervisor, WorkerSpec, check_port_free
from waystone_cli.core.errors import WaystoneError

# Writes "start", then one line per SIGHUP; on SIGTERM writes "term" and exits 0 (or,
# with IGNORE set, ignores it).
WORKER = """
import os, signal, sys, time
out = open(sys.argv[1], "a", buffering=1)
def hup(*_): out.write("hup\\n")
def term(*_):
    out.write("term\\n")
    sys.exit(0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("IGNORE") else term)
out.write(f"start {os.environ['WAYSTONE_WORKER']}\\n")
for _ in range(600):
    time.sleep(0.1)
"""


def specs(tmp_path: Path, count: int, **env: str) -> list[WorkerSpec]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return [
        WorkerSpec(
            name=f"t-w{i}",
            command=[sys.executable, str(script), str(tmp_path / f"w{i}.log")],
            env={**os.environ, "WAYSTONE_WORKER": f"t-w{i}", **env},
        )
        for i in range(1, count + 1)
    ]


def lines(tmp_path: Path, i: int) -> list[str]:
    path = tmp_path / f"w{i}.log"
    return path.read_text().splitlines() if path.exists() else []


async def until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen within 15 s: {what}")


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    b = Backoff(first_s=0.5, max_s=4.0, stable_s=60.0)
    assert b.after(0.0, 1.0) == 0.5
    assert b.after(0.5, 1.0) == 1.0
    assert b.after(2.0, 1.0) == 4.0
    assert b.after(4.0, 1.0) == 4.0
    assert b.after(4.0, 60.0) == 0.5


async def test_workers_start_get_sighup_and_stop_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    sup = Supervisor(specs(tmp_path, 2), stop_timeout_s=10)
    running = asyncio.create_task(sup.run())
    await until(lambda: lines(tmp_path, 1) and lines(tmp_path, 2), "both workers started")
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: all("hup" in lines(tmp_path, i) for i in (1, 2)), "hup in both")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, 15) == 0
    assert lines(tmp_path, 1) == ["start t-w1", "hup", "term"]
    assert lines(tmp_path, 2) == ["start t-w2", "hup", "term"]
    assert sup.pids == [None, None]


async def test_a_worker_that_dies_is_restarted(tmp_path: Path) -> None:
    sup = Supervisor(specs(tmp_path, 2), backoff=Backoff(first_s=0.05), stop_timeout_s=10)
    running = asyncio.create_task(sup.run(signals=False))
    await until(lambda: lines(tmp_path, 1) and lines(tmp_path, 2), "both workers started")
    first = sup.pids[0]
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until(lambda: lines(tmp_path, 1) == ["start t-w1"] * 2, "the restarted worker")
    assert sup.starts == [2, 1] and sup.pids[0] not in (None, first)
    sup.stop()
    assert await asyncio.wait_for(running, 15) == 0
    assert lines(tmp_path, 1) == ["start t-w1", "start t-w1", "term"]


async def test_a_worker_that_ignores_sigterm_is_killed_and_the_exit_code_says_so(
    tmp_path: Path,
) -> None:
    sup = Supervisor(specs(tmp_path, 1, IGNORE="1"), stop_timeout_s=0.5)
    running = asyncio.create_task(sup.run(signals=False))
    await until(lambda: lines(tmp_path, 1), "worker started")
    sup.stop()
    assert await asyncio.wait_for(running, 15) == 1
    assert sup.pids == [None]


@pytest.mark.parametrize("shared", [False, True])
def test_a_port_another_program_listens_on_is_refused(shared: bool) -> None:
    with socket.socket() as held:
        # shared: another serve --workers, whose sockets set SO_REUSEPORT
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(shared))
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(WaystoneError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)


async def test_a_worker_command_that_cannot_start_is_retried_and_the_exit_code_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = WorkerSpec(name="t-w1", command=[str(tmp_path / "missing")], env={})
    sup = Supervisor([spec], backoff=Backoff(first_s=0.01, max_s=0.02), stop_timeout_s=1)
    running = asyncio.create_task(sup.run(signals=False))
    await until(lambda: caplog.text.count("worker t-w1 exited with no start") >= 2, "retries")
    sup.stop()
    assert await asyncio.wait_for(running, 15) == 1
    assert sup.starts == [0]


def test_a_port_free_but_for_connections_in_time_wait_is_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end waits in TIME_WAIT
        client.close()
    check_port_free("127.0.0.1", port)
