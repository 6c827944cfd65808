"""One instance with its counters in Redis against the same instance in memory.

    python bench/proxy/redis_counters.py                  # ~1 minute
    python bench/proxy/redis_counters.py --rounds 5 --duration 10 --rulesets 20

Starts on 127.0.0.1 in a temporary directory: the fast fake provider (``provider.py``)
and a ``redis-server`` on core 1 beside wrk, and two ``waystone serve`` on core 0 with
the same config (``--rulesets`` rulesets and group credits, so every request tests
limits), one of them with ``[cluster] redis_url``.  wrk (``load.lua``, JSON, users
rotating) drives them in turns, A, B, A, B, ... (interleaved in the same run), one at a
time.  Reported: requests per second of each, their ratio per round and its median, and
Redis round trips and commands per request (the gateway's own counters, and Redis's
``INFO commandstats`` for EVALSHA).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from gateway_config import config_text
from hotspots import hotspot_lines
from load import Load, run_wrk
from processes import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def evalsha_stats(redis: RedisServer) -> tuple[int, float]:
    """EVALSHA calls so far and the server's CPU time for them (microseconds)."""
    import redis as redis_py

    stats = redis_py.Redis(port=redis.port).info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0))


def serve(work: Path, name: str, provider_port: int, rulesets: int, redis_url: str | None) -> tuple:
    home = work / name
    home.mkdir()
    port = free_port()
    text = config_text(port, provider_port, rulesets)
    text = text.replace("[server]\n", "[server]\nmetrics_public = true\n", 1)
    if redis_url:
        text += f'\n[cluster]\nredis_url = "{redis_url}"\ninstance = "{name}"\n'
    (home / "config.toml").write_text(text)
    log = work / f"{name}.log"
    env = {"WAYSTONE_HOME": str(home), "BENCH_PROVIDER_KEY": "sk-bench"}
    proc = start([sys.executable, "-m", "waystone_cli.main", "serve"], 0, log, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rulesets", type=int, default=20)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy on the Redis gateway in round 1"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waystone-bench-redis-") as root:
        work = Path(root)
        (work / "redis-server").mkdir()
        redis = RedisServer("/usr/bin/redis-server", work / "redis-server")
        redis.start()
        provider_port = free_port()
        provider = start(
            [sys.executable, str(HERE / "provider.py"), "--port", str(provider_port)],
            1,
            work / "provider.log",
        )
        procs = []
        try:
            assert redis.proc is not None
            subprocess.run(["taskset", "-pc", "1", str(redis.proc.pid)], check=True,
                           capture_output=True)  # fmt: skip
            wait_http(f"http://127.0.0.1:{provider_port}/", provider, work / "provider.log")
            memory = serve(work, "memory", provider_port, args.rulesets, None)
            shared = serve(work, "redis", provider_port, args.rulesets, redis.url)
            procs = [memory[0], shared[0]]
            report(args, (memory[1], memory[0].pid), (shared[1], shared[0].pid), redis, work)
            events = [
                line
                for line in (work / "redis.log").read_text().splitlines()
                if "redis:" in line or "ERROR" in line or "WARNING" in line
            ]
            print(f"{len(events)} Redis events or errors in the gateway's log", *events[-5:])
        finally:
            for proc in procs:
                stop(proc)
            stop(provider)
            redis.stop()


def profile(pid: int, seconds: float, work: Path) -> subprocess.Popen[bytes]:
    cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
           "--nonblocking", "--duration", str(max(1, int(seconds) - 1)),
           "--output", str(work / "profile.txt")]  # fmt: skip
    return start(cmd, 1, work / "py-spy.log")


def report(
    args: argparse.Namespace,
    memory_gw: tuple[int, int],
    shared_gw: tuple[int, int],
    redis: RedisServer,
    work: Path,
) -> None:
    """Each round: requests/s of both, and the CPU each gateway spent per request, which
    other work on the machine disturbs far less than requests/s."""
    (memory, memory_pid), (shared, pid) = memory_gw, shared_gw
    load = Load(connections=args.connections, stream=False, users=1000, groups=50,
                inline_metadata=False)  # fmt: skip
    for port in (memory, shared):
        run_wrk(port, load, args.warmup, core=1)
    ratios, cpu_ratios, trips, commands, evals = [], [], [], [], []
    for n in range(args.rounds):
        ca = cpu_seconds(memory_pid)
        a = run_wrk(memory, load, args.duration, core=1)
        cpu_a = (cpu_seconds(memory_pid) - ca) / max(a.requests, 1)
        t0, c0 = (
            metric(shared, "waystone_redis_round_trips_total"),
            metric(shared, "waystone_redis_commands_total"),
        )
        e0, u0 = evalsha_stats(redis)
        spy = profile(pid, args.duration, work) if args.profile and n == 0 else None
        cb = cpu_seconds(pid)
        b = run_wrk(shared, load, args.duration, core=1)
        cpu_b = (cpu_seconds(pid) - cb) / max(b.requests, 1)
        cpu_ratios.append(cpu_a / cpu_b)
        if spy is not None:
            spy.wait()
            print("\n".join(hotspot_lines(work / "profile.txt", top=30)))
        t1, c1 = (
            metric(shared, "waystone_redis_round_trips_total"),
            metric(shared, "waystone_redis_commands_total"),
        )
        e1, u1 = evalsha_stats(redis)
        ratios.append(b.rps / a.rps)
        trips.append((t1 - t0) / max(b.requests, 1))
        commands.append((c1 - c0) / max(b.requests, 1))
        evals.append((e1 - e0) / max(b.requests, 1))
        redis_cpu = (u1 - u0) / 1e6 / args.duration
        print(
            f"round {n + 1}: memory {a.rps:.0f} rps (p99 {a.p99_ms:.1f} ms, {a.errors} errors), "
            f"redis {b.rps:.0f} rps (p99 {b.p99_ms:.1f} ms, {b.errors} errors): "
            f"{ratios[-1]:.2f}x; gateway CPU per request {cpu_a * 1e6:.0f} vs "
            f"{cpu_b * 1e6:.0f} us ({cpu_ratios[-1]:.2f}x); {trips[-1]:.2f} round trips, {commands[-1]:.2f} commands, "
            f"{evals[-1]:.2f} EVALSHA per request, Redis busy {redis_cpu:.0%} of a core"
        )
    print(
        f"median: redis/memory {statistics.median(ratios):.2f}x requests/s, "
        f"{statistics.median(cpu_ratios):.2f}x by gateway CPU per request, "
        f"{statistics.median(trips):.2f} round trips and {statistics.median(commands):.2f} "
        f"commands per request (json, c{args.connections}, {args.rulesets} rulesets)"
    )


if __name__ == "__main__":
    main()
