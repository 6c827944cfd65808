"""Two versions of waystone, one run: requests per second, taking turns (an A/B).

    git worktree add /tmp/before <commit>
    cd /tmp && python /work/main/bench/ab.py --a /tmp/before --b /work/main

Each version is served by ``python -m waystone_cli.main serve`` with its source tree
first on ``PYTHONPATH``, from a temporary home (so the current directory is never a
checkout: ``python -m`` would import that one instead), with the proxy benchmark's
config (``bench/proxy/gateway_config.py``: one priced provider, the ledger on; with
``--rulesets N``, N rulesets and inline metadata).  Both gateways run on core 0; the
fast fake provider and wrk share core 1.  For every mode (JSON, SSE) the two take turns,
``--rounds`` times: a warm-up, then a measured wrk run at ``--connections``.  Noise on a
shared machine hits both alike, so the figure to read is the median over rounds of the
per-round ratio B/A, of requests per second and of requests per CPU-second of the
gateway (the one to trust when the two may not get the same share of core 0).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "proxy"))

from gateway_config import config_text  # noqa: E402
from load import Load, run_wrk  # noqa: E402
from processes import free_port, start, stop, wait_http  # noqa: E402
from run import GATEWAY_CORE, LOAD_CORE, cpu_seconds, start_provider  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="source tree of version A")
    parser.add_argument("--b", type=Path, required=True, help="source tree of version B")
    parser.add_argument("--modes", default="json,sse")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rulesets", type=int, default=0)
    parser.add_argument("--users", type=int, default=1000)
    return parser.parse_args()


Gateway = tuple[subprocess.Popen[bytes], int]


def start_gateway(
    work: Path, label: str, source: Path, provider_port: int, rulesets: int
) -> Gateway:
    home, port = work / label, free_port()
    home.mkdir()
    (home / "config.toml").write_text(config_text(port, provider_port, rulesets))
    env = {
        "WAYSTONE_HOME": str(home),
        "BENCH_PROVIDER_KEY": "sk-bench",
        "PYTHONPATH": str(source.resolve()),
    }
    log = home / "serve.log"
    proc = start([sys.executable, "-m", "waystone_cli.main", "serve"], GATEWAY_CORE, log, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
    return proc, port


def measure(
    proc: subprocess.Popen[bytes], port: int, load: Load, args: argparse.Namespace
) -> tuple[float, float]:
    run_wrk(port, load, args.warmup, LOAD_CORE)
    before = cpu_seconds(proc.pid)
    result = run_wrk(port, load, args.duration, LOAD_CORE)
    cpu = cpu_seconds(proc.pid) - before
    if result.errors:
        raise RuntimeError(f"{result.errors} errors against port {port}")
    return result.rps, result.requests / cpu if cpu else 0.0


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="waystone-ab-") as tmp:
        work = Path(tmp)
        provider, provider_port = start_provider(work)
        gateways = {
            "A": start_gateway(work, "a", args.a, provider_port, args.rulesets),
            "B": start_gateway(work, "b", args.b, provider_port, args.rulesets),
        }
        try:
            for mode in args.modes.split(","):
                load = Load(
                    args.connections,
                    mode == "sse",
                    args.users,
                    50,
                    inline_metadata=args.rulesets > 0,
                )
                report(mode, load, gateways, args)
        finally:
            for proc, _ in gateways.values():
                stop(proc)
            stop(provider)


def report(mode: str, load: Load, gateways: dict[str, Gateway], args: argparse.Namespace) -> None:
    rps_ratios, cpu_ratios = [], []
    for i in range(args.rounds):
        # Alternate who goes first, so a trend in the machine's load favours neither.
        order = ("A", "B") if i % 2 == 0 else ("B", "A")
        got = {label: measure(*gateways[label], load, args) for label in order}
        (a_rps, a_cpu), (b_rps, b_cpu) = got["A"], got["B"]
        rps_ratios.append(b_rps / a_rps)
        cpu_ratios.append(b_cpu / a_cpu)
        print(
            f"{mode} c{args.connections} round {i + 1}: A {a_rps:7.0f} rps {a_cpu:6.0f} req/cpu-s"
            f" | B {b_rps:7.0f} rps {b_cpu:6.0f} req/cpu-s | B/A {rps_ratios[-1]:.3f}"
            f" / {cpu_ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"{mode} c{args.connections}: median B/A requests/s {statistics.median(rps_ratios):.3f},"
        f" requests per CPU-second {statistics.median(cpu_ratios):.3f}"
        f" ({args.rounds} rounds of {args.duration:g} s)",
        flush=True,
    )


if __name__ == "__main__":
    main()
