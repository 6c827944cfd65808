"""Running wrk with ``load.lua`` and reading its one-line JSON summary."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("load.lua")


@dataclass(frozen=True)
class Load:
    connections: int
    stream: bool
    users: int
    groups: int
    inline_metadata: bool


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def run_wrk(port: int, load: Load, seconds: float, core: int) -> WrkResult:
    env = {
        "BENCH_USERS": str(load.users),
        "BENCH_GROUPS": str(load.groups),
        "BENCH_STREAM": "1" if load.stream else "0",
        "BENCH_INLINE_META": "1" if load.inline_metadata else "0",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    # One wrk thread: on its own half of core 1 it sends far more than one Python
    # gateway core can answer.  --timeout 10s: a slow answer is latency, not an error.
    cmd = [
        "taskset",
        "-c",
        str(core),
        "wrk",
        "-t1",
        f"-c{load.connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/v1/chat/completions",
    ]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
        cwd=LUA.parent,
    ).stdout
    return parse_summary(out)


def parse_summary(out: str) -> WrkResult:
    line = next((x for x in out.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{out}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    )
