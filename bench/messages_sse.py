"""Anthropic's Messages API against chat, streamed, on one gateway: requests per second.

    python bench/messages_sse.py            # about a minute and a half

One ``waystone serve`` (the proxy benchmark's config, ``bench/proxy/gateway_config.py``,
plus an ``anthropic`` provider on the same fast fake provider, which answers
``/v1/messages`` with an Anthropic stream of the same text) on core 0; the fake provider
and wrk on core 1.  For ``--rounds`` rounds the two routes take turns (who goes first
alternates): a warm-up, then a measured wrk run at ``--connections``, chat SSE with
``bench/proxy/load.lua`` and messages SSE with ``bench/messages_load.lua`` (same users,
groups, prompt and token cap).  The figure to read is the median over rounds of the
per-round ratio messages / chat, of requests per second and of requests per CPU-second
of the gateway.  The bar: at least 0.9.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "proxy"))

from gateway_config import config_text  # noqa: E402
from load import LUA, WrkResult, parse_summary  # noqa: E402
from processes import free_port, start, stop, wait_http  # noqa: E402
from run import GATEWAY_CORE, LOAD_CORE, cpu_seconds, start_provider  # noqa: E402

ROUTES = {
    "chat": (LUA, "/v1/chat/completions"),
    "messages": (HERE / "messages_load.lua", "/v1/messages"),
}


def anthropic_provider(provider_port: int) -> str:
    return f"""
[providers.anth]
kind = "anthropic"
base_url = "http://127.0.0.1:{provider_port}"
api_key = "env:BENCH_PROVIDER_KEY"
models = ["bench-claude"]

[prices."anth/bench-claude"]
input = 3.0
output = 15.0
cached_input = 0.3
"""


def wrk(port: int, route: str, seconds: float, connections: int) -> WrkResult:
    script, path = ROUTES[route]
    env = {
        "BENCH_USERS": "1000",
        "BENCH_GROUPS": "50",
        "BENCH_STREAM": "1",
        "BENCH_INLINE_META": "0",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    cmd = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}",
           f"-d{seconds:g}s", "--timeout", "10s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{port}{path}"]  # fmt: skip
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True,
        cwd=script.parent,
    ).stdout  # fmt: skip
    return parse_summary(out)


def measure(
    proc: subprocess.Popen[bytes], port: int, route: str, args: argparse.Namespace
) -> tuple[float, float]:
    wrk(port, route, args.warmup, args.connections)
    before = cpu_seconds(proc.pid)
    result = wrk(port, route, args.duration, args.connections)
    cpu = cpu_seconds(proc.pid) - before
    if result.errors:
        raise RuntimeError(f"{result.errors} errors on {route}")
    return result.rps, result.requests / cpu if cpu else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waystone-messages-") as tmp:
        work = Path(tmp)
        provider, provider_port = start_provider(work)
        home, port = work / "gateway", free_port()
        home.mkdir()
        config = config_text(port, provider_port) + anthropic_provider(provider_port)
        (home / "config.toml").write_text(config)
        env = {"WAYSTONE_HOME": str(home), "BENCH_PROVIDER_KEY": "sk-bench"}
        log = home / "serve.log"
        gateway = start(
            [sys.executable, "-m", "waystone_cli.main", "serve"], GATEWAY_CORE, log, env
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/readyz", gateway, log)
            report(gateway, port, args)
        finally:
            stop(gateway)
            stop(provider)


def report(gateway: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> None:
    rps_ratios, cpu_ratios = [], []
    for i in range(args.rounds):
        order = ("chat", "messages") if i % 2 == 0 else ("messages", "chat")
        got = {route: measure(gateway, port, route, args) for route in order}
        (c_rps, c_cpu), (m_rps, m_cpu) = got["chat"], got["messages"]
        rps_ratios.append(m_rps / c_rps)
        cpu_ratios.append(m_cpu / c_cpu)
        print(
            f"SSE c{args.connections} round {i + 1}: chat {c_rps:7.0f} rps {c_cpu:6.0f} req/cpu-s"
            f" | messages {m_rps:7.0f} rps {m_cpu:6.0f} req/cpu-s"
            f" | messages/chat {rps_ratios[-1]:.3f} / {cpu_ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"SSE c{args.connections}: median messages/chat requests/s"
        f" {statistics.median(rps_ratios):.3f}, requests per CPU-second"
        f" {statistics.median(cpu_ratios):.3f} ({args.rounds} rounds of {args.duration:g} s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
