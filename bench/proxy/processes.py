"""Starting, pinning, watching and stopping the benchmark's processes.

Every process is started under ``taskset -c CORE`` (taskset execs the command, so the
Popen pid is the process itself and its threads, DuckDB's included, inherit the core).
Resident memory is sampled from /proc/PID/status by a background thread, because
VmHWM only gives the peak since the process started, not the peak of one case.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    cmd: list[str], core: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            ["taskset", "-c", str(core), *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers (any HTTP status counts: the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s; see {log}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, then wait (waystone flushes its ledger); SIGKILL only if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class RssSampler:
    """Samples VmRSS every ``interval`` seconds; ``take_peak()`` returns and resets the peak."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self._peak_kb = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            kb = status_kb(self.pid, "VmRSS")
            if kb is None:
                return
            with self._lock:
                self._peak_kb = max(self._peak_kb, kb)

    def take_peak(self) -> float:
        """The peak VmRSS in MB since the last call (also read once now)."""
        now = status_kb(self.pid, "VmRSS") or 0
        with self._lock:
            peak, self._peak_kb = max(self._peak_kb, now), 0
        return peak / 1024

    def rss_mb(self) -> float:
        return (status_kb(self.pid, "VmRSS") or 0) / 1024

    def hwm_mb(self) -> float:
        return (status_kb(self.pid, "VmHWM") or 0) / 1024

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
