"""The proxy benchmark: waystone against a minimal aiohttp pass-through (SPEC §11).

    python bench/proxy/run.py                          # ~2 minutes
    python bench/proxy/run.py --rulesets 20 --users 10000   # issue 4's bar, ~3 minutes

Processes, all on loopback: a fast fake provider (``provider.py``), the reference
pass-through (``reference.py``) and ``waystone serve`` with a temporary
``WAYSTONE_HOME``, the ledger on and every request naming a user and a group (rotating
over ``--users`` users in ``--groups`` groups).  The gateways are pinned to core 0; the
provider and wrk share core 1.  With ``--rulesets N`` a second waystone with N rulesets
runs beside one with none, and the traffic carries inline user and group metadata.

For every case (JSON and SSE, each concurrency) the gateways take turns, so background
load on a shared machine hits them alike: a warm-up, then a measured wrk run, while a
thread samples the gateway's VmRSS and /proc gives its CPU time.  Afterwards each
waystone is stopped with SIGTERM and its ledger opened read-only: every response wrk
received must have an ``ok`` row.  The Markdown report goes to stdout and to
``bench/results/proxy-<date>.md``.  ``--profile`` runs py-spy on every gateway during
each measured run and appends the hotspots (the numbers of a profiled run are not for
comparison: py-spy takes CPU from core 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway_config import config_text
from load import Load, run_wrk
from processes import RssSampler, free_port, start, stop, wait_http
from report import LedgerCheck, Measurement, ledger_table, results_table, targets

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GATEWAY_CORE, LOAD_CORE = 0, 1


@dataclass
class Gateway:
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    sampler: RssSampler
    home: Path | None = None
    hwm_mb: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_provider(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port, log = free_port(), work / "provider.log"
    proc = start([sys.executable, str(HERE / "provider.py"), "--port", str(port)], LOAD_CORE, log)
    wait_http(f"http://127.0.0.1:{port}/", proc, log)
    return proc, port


def start_reference(work: Path, provider_port: int) -> Gateway:
    port, log = free_port(), work / "reference.log"
    cmd = [
        sys.executable,
        str(HERE / "reference.py"),
        "--port",
        str(port),
        "--upstream",
        f"http://127.0.0.1:{provider_port}/v1",
    ]
    proc = start(cmd, GATEWAY_CORE, log)
    wait_http(f"http://127.0.0.1:{port}/", proc, log)
    return Gateway("reference", port, proc, log, RssSampler(proc.pid))


def start_waystone(
    work: Path, label: str, provider_port: int, rulesets: int, flush_ms: int | None = None
) -> Gateway:
    home, port = work / label, free_port()
    home.mkdir()
    config = config_text(port, provider_port, rulesets, flush_interval_ms=flush_ms)
    (home / "config.toml").write_text(config)
    log = home / "serve.log"
    env = {"WAYSTONE_HOME": str(home), "BENCH_PROVIDER_KEY": "sk-bench", "PYTHONPATH": str(ROOT)}
    proc = start([sys.executable, "-m", "waystone_cli.main", "serve"], GATEWAY_CORE, log, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
    return Gateway(label, port, proc, log, RssSampler(proc.pid), home=home)


def measure(gw: Gateway, load: Load, args: argparse.Namespace, work: Path) -> Measurement:
    start_at = datetime.now(UTC).replace(tzinfo=None)
    warm = run_wrk(gw.port, load, args.warmup, LOAD_CORE)
    gw.sampler.take_peak()
    cpu_before = cpu_seconds(gw.pid)
    profiler = _start_profiler(gw, load, args, work) if args.profile else None
    result = run_wrk(gw.port, load, args.duration, LOAD_CORE)
    cpu = cpu_seconds(gw.pid) - cpu_before
    peak = gw.sampler.take_peak()
    if profiler is not None:
        profiler.wait(timeout=60)
    end_at = datetime.now(UTC).replace(tzinfo=None)
    mode = "sse" if load.stream else "json"
    return Measurement(gw.label, mode, load.connections, warm, result, peak, cpu, start_at, end_at)


def _start_profiler(
    gw: Gateway, load: Load, args: argparse.Namespace, work: Path
) -> subprocess.Popen[bytes]:
    name = f"profile-{gw.label}-{'sse' if load.stream else 'json'}-c{load.connections}.txt"
    out = work / name
    # A fixed duration inside the run: py-spy writes its file when it ends by itself
    # (or on SIGINT), not on SIGTERM.
    seconds = max(1, int(args.duration) - 1)
    cmd = [
        "py-spy",
        "record",
        "--pid",
        str(gw.pid),
        "--format",
        "raw",
        "--rate",
        "200",
        "--nonblocking",
        "--duration",
        str(seconds),
        "--output",
        str(out),
    ]
    return start(cmd, LOAD_CORE, work / "py-spy.log")


def ledger_checks(gw: Gateway, ms: list[Measurement]) -> list[LedgerCheck]:
    import duckdb

    assert gw.home is not None
    con = duckdb.connect(str(_ledger_path(gw.home)), read_only=True)
    checks = []
    try:
        for m in (m for m in ms if m.gateway == gw.label):
            rows = con.execute(
                "SELECT outcome, count(*) FROM requests WHERE ts >= ? AND ts < ? GROUP BY outcome",
                [m.start, m.end],
            ).fetchall()
            checks.append(
                LedgerCheck(
                    gw.label, m.mode, m.connections, m.warm.requests + m.run.requests, dict(rows)
                )
            )
    finally:
        con.close()
    return checks


def _ledger_path(home: Path) -> Path:
    found = sorted(home.rglob("*.duckdb"))
    if not found:
        raise RuntimeError(f"no ledger file under {home}")
    return found[0]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="waystone vs a minimal aiohttp pass-through, with wrk.")
    p.add_argument("--duration", type=float, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up before each run")
    p.add_argument("--connections", default="16,64", help="comma-separated concurrencies")
    p.add_argument("--modes", default="json,sse", help="json, sse or both")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--groups", type=int, default=50)
    p.add_argument(
        "--rulesets",
        type=int,
        default=0,
        help="also run waystone with N rulesets (and inline metadata) beside none",
    )
    p.add_argument(
        "--also-flush-ms",
        type=int,
        default=None,
        help="also run waystone with this [ledger] flush_interval_ms (the writer's batch period)",
    )
    p.add_argument("--repeat", type=int, default=1, help="alternate the gateways this many times")
    p.add_argument("--profile", action="store_true", help="py-spy every gateway's measured runs")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, ledgers)")
    return p.parse_args()


def preflight(args: argparse.Namespace) -> None:
    missing = [
        t
        for t in ("wrk", "taskset") + (("py-spy",) if args.profile else ())
        if shutil.which(t) is None
    ]
    if missing:
        sys.exit(
            f"missing: {', '.join(missing)} (wrk: apt-get install -y wrk; "
            "py-spy: pip install py-spy)"
        )
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the gateway on core 0, the provider and wrk on core 1")


def main() -> None:
    args = parse_args()
    preflight(args)
    work = Path(tempfile.mkdtemp(prefix="waystone-bench-"))
    gateways: list[Gateway] = []
    provider: subprocess.Popen[bytes] | None = None
    load_before, started = os.getloadavg(), time.monotonic()
    try:
        provider, provider_port = start_provider(work)
        gateways.append(start_reference(work, provider_port))
        gateways.append(start_waystone(work, "waystone", provider_port, 0))
        if args.rulesets > 0:
            label = f"waystone+{args.rulesets}rs"
            gateways.append(start_waystone(work, label, provider_port, args.rulesets))
        if args.also_flush_ms is not None:
            label = f"waystone-flush{args.also_flush_ms}"
            gateways.append(start_waystone(work, label, provider_port, 0, args.also_flush_ms))
        ms = run_cases(args, gateways, work)
        checks = finish(gateways, ms)
        lines = render(args, ms, checks, gateways, load_before, time.monotonic() - started)
        if args.profile:
            lines += profiles(work)
    finally:
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
        if provider is not None:
            stop(provider)
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    write(lines)


def run_cases(args: argparse.Namespace, gateways: list[Gateway], work: Path) -> list[Measurement]:
    """Every case, the gateways taking turns so background load hits them alike."""
    ms: list[Measurement] = []
    for mode in args.modes.split(","):
        for conns in (int(c) for c in args.connections.split(",")):
            load = Load(conns, mode == "sse", args.users, args.groups, args.rulesets > 0)
            for _ in range(args.repeat):
                for gw in gateways:
                    ms.append(measure(gw, load, args, work))
                    print(_progress(ms[-1]), file=sys.stderr, flush=True)
    return ms


def finish(gateways: list[Gateway], ms: list[Measurement]) -> list[LedgerCheck]:
    """Stop the waystones with SIGTERM (they flush) and check their ledgers."""
    checks: list[LedgerCheck] = []
    for gw in gateways:
        gw.hwm_mb = gw.sampler.hwm_mb()
        if gw.home is not None:
            code = stop(gw.proc)
            if code != 0:
                raise RuntimeError(f"{gw.label} exited with {code} on SIGTERM; see {gw.log}")
            checks += ledger_checks(gw, ms)
    return checks


def _progress(m: Measurement) -> str:
    return (
        f"{m.gateway:>16} {m.mode} c{m.connections}: {m.run.rps:8,.0f} rps  "
        f"p99 {m.run.p99_ms:7.1f} ms  errors {m.run.errors}  RSS {m.peak_rss_mb:.0f} MB"
    )


def render(
    args: argparse.Namespace,
    ms: list[Measurement],
    checks: list[LedgerCheck],
    gateways: list[Gateway],
    load_before: tuple[float, float, float],
    elapsed: float,
) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_after = os.getloadavg()
    lines = [
        f"# waystone proxy benchmark, {when}",
        "",
        f"wrk -t1, {args.warmup:g} s warm-up + {args.duration:g} s per run, x{args.repeat}; "
        f"{args.users} users in {args.groups} groups; gateway on core 0, provider and wrk on "
        f"core 1; {os.cpu_count()} cores, load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; total {elapsed:.0f} s; code at {_revision()}.",
        "",
        *results_table(ms, "reference"),
        "",
        "Targets (SPEC §11):",
        *targets(ms, "reference", "waystone"),
    ]
    if args.rulesets > 0:
        label = f"waystone+{args.rulesets}rs"
        lines += [
            "",
            f"{args.rulesets} rulesets vs none (issue 4: within 15%):",
            "",
            *results_table([m for m in ms if m.gateway != "reference"], "waystone"),
        ]
        lines += [f"- {label}: " + _ruleset_verdict(ms, label)]
    lines += [
        "",
        "Peak RSS over the whole run (VmHWM): "
        + ", ".join(f"{gw.label} {gw.hwm_mb:.0f} MB" for gw in gateways),
        "",
    ]
    lines += ["Ledger check (SIGTERM, then the DuckDB file read-only):", "", *ledger_table(checks)]
    return lines


def _revision() -> str:
    """The commit measured, marked dirty when the working tree has changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "daemon", "waystone_cli"],
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def _ruleset_verdict(ms: list[Measurement], label: str) -> str:
    from report import summary

    stats = summary(ms)
    parts = []
    for (gw, mode, conns), s in stats.items():
        base = stats.get(("waystone", mode, conns))
        if gw == label and base:
            ratio = s["rps"] / base["rps"]
            per_cpu = s["rps_cpu"] / base["rps_cpu"] if base["rps_cpu"] else 0.0
            parts.append(
                f"{mode} c{conns} {ratio:.2f}x (per CPU-second {per_cpu:.2f}x) "
                f"{'PASS' if ratio >= 0.85 else 'FAIL'}"
            )
    return ", ".join(parts)


def profiles(work: Path) -> list[str]:
    from hotspots import hotspot_lines

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in sorted(work.glob("profile-*.txt")):
        lines += ["", f"## {path.stem}", "", *hotspot_lines(path)]
        shutil.copy(path, out_dir / path.name)  # collapsed stacks, for a flame graph
    return lines


def write(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"proxy-{datetime.now(UTC):%Y-%m-%d-%H%M}.md"
    out.write_text(text)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
