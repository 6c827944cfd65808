"""A spike rule (``action = "flag"``) on against off, on the proxy benchmark's harness.

    python bench/proxy/spike.py                     # ~1 minute
    python bench/proxy/spike.py --repeat 3 --duration 10

Three ``waystone serve`` on the same fake provider (``provider.py``), each pinned to core
0 with the provider and wrk on core 1, JSON at concurrency 16 (``--connections``), users
rotating over 1,000 in 50 groups, every request naming both:

- ``off``: no rules;
- ``ruleset``: one ruleset (``always``) with a rule whose ``model`` trigger never
  matches: what any applying ruleset costs (matching, the ``rulesets`` list on every
  ledger row and response), without the spike trigger;
- ``spike``: one ruleset (``always``) with ``spike = {metric = "cost_usd", window = "1h",
  factor = 10, baseline = "7d", min = 1000000}``: judged for the user and the group on
  every request, ``min`` never reached (no request is flagged), the trigger's cost for
  the subjects below ``min``, most of them in real traffic (one counter read each: the
  baseline is read only past ``min``);
- ``spike-firing``: the same with ``min = 0``: with no history every request after a
  subject's first is a spike (a short run has no history before its current hour), so
  both counter reads and the flag path (hit, flagged row) run on nearly all.

The gateways take turns run by run (A/B interleaved in one run, ``--repeat`` rounds, the
order rotating each round, since a gateway's ledger writer still works on core 0 while
the next one is measured), so background load hits them alike.  Reported: requests per
second, p99 and requests per CPU-second of the gateway, and the median over the rounds
of each round's ratio to ``off``; per CPU-second is the figure to trust on a shared
machine.  Afterwards every
ledger is checked: ``spike-firing`` has flagged rows, ``spike`` and ``off`` none.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from gateway_config import config_text
from load import Load
from processes import RssSampler, free_port, start, stop, wait_http
from report import Measurement
from run import GATEWAY_CORE, ROOT, Gateway, _ledger_path, measure, start_provider

SPIKE = """
[rules.runaway]
spike = {{ metric = "cost_usd", window = "1h", factor = 10, baseline = "7d", min = {min} }}
action = "flag"

[rulesets.watch]
when = "always"
rules = ["runaway"]
"""
MODEL_RULE = """
[rules.never]
model = "nothing/*"
action = "flag"

[rulesets.watch]
when = "always"
rules = ["never"]
"""
VARIANTS = {"off": None, "ruleset": -1, "spike": 1_000_000, "spike-firing": 0}


def start_gateway(work: Path, label: str, provider_port: int, minimum: int | None) -> Gateway:
    home, port = work / label, free_port()
    home.mkdir()
    text = config_text(port, provider_port)
    if minimum is not None:
        text += MODEL_RULE if minimum < 0 else SPIKE.format(min=minimum)
    (home / "config.toml").write_text(text)
    log = home / "serve.log"
    env = {"WAYSTONE_HOME": str(home), "BENCH_PROVIDER_KEY": "sk-bench", "PYTHONPATH": str(ROOT)}
    proc = start([sys.executable, "-m", "waystone_cli.main", "serve"], GATEWAY_CORE, log, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
    return Gateway(label, port, proc, log, RssSampler(proc.pid), home=home)


def flagged_rows(gw: Gateway) -> tuple[int, int]:
    import duckdb

    assert gw.home is not None
    con = duckdb.connect(str(_ledger_path(gw.home)), read_only=True)
    try:
        row = con.execute("SELECT count(*) FILTER (WHERE flagged), count(*) FROM requests")
        found = row.fetchone()
    finally:
        con.close()
    return (int(found[0]), int(found[1])) if found else (0, 0)


def report(
    rounds: list[dict[str, Measurement]],
    ledgers: dict[str, tuple[int, int]],
    args: argparse.Namespace,
) -> list[str]:
    """Medians over the rounds of each value, and of each round's ratio to ``off``."""

    def med(label: str, value: Callable[[Measurement], float]) -> float:
        return median(value(r[label]) for r in rounds)

    def ratio(label: str, value: Callable[[Measurement], float]) -> float:
        return median(value(r[label]) / value(r["off"]) for r in rounds)

    def rps(m: Measurement) -> float:
        return m.run.rps

    def per_cpu(m: Measurement) -> float:
        return m.run.requests / m.cpu_s if m.cpu_s else 0.0

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# spike rule on vs off, {when}",
        "",
        f"json c{args.connections}, {args.warmup:g} s warm-up + {args.duration:g} s per run, "
        f"{len(rounds)} rounds, the order rotating each round; load average "
        f"{os.getloadavg()[0]:.2f} at the end. Ratios: median of the rounds' ratios.",
        "",
        "| gateway | rps | vs off | p99 ms | req per CPU-s | vs off | errors | flagged rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in VARIANTS:
        errors = sum(r[label].run.errors for r in rounds)
        flagged, total = ledgers[label]
        lines.append(
            f"| {label} | {med(label, rps):,.0f} | {ratio(label, rps):.3f}× | "
            f"{med(label, lambda m: m.run.p99_ms):.1f} | {med(label, per_cpu):,.0f} | "
            f"{ratio(label, per_cpu):.3f}× | {errors} | {flagged:,} of {total:,} |"
        )
    lines += [
        "",
        "Per round, requests per CPU-second against off: "
        + "; ".join(
            ", ".join(
                f"{label} {per_cpu(r[label]) / per_cpu(r['off']):.3f}"
                for label in VARIANTS
                if label != "off"
            )
            for r in rounds
        ),
    ]
    return lines


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A spike rule on vs off, with wrk.")
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--groups", type=int, default=50)
    args = p.parse_args()
    args.profile = False  # ``run.measure`` reads it
    return args


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="waystone-spike-bench-"))
    gateways: list[Gateway] = []
    provider = None
    try:
        provider, provider_port = start_provider(work)
        for label, minimum in VARIANTS.items():
            gateways.append(start_gateway(work, label, provider_port, minimum))
        load = Load(args.connections, False, args.users, args.groups, False)
        rounds: list[dict[str, Measurement]] = []
        for i in range(args.repeat):
            rounds.append({})
            for gw in gateways[i % len(gateways) :] + gateways[: i % len(gateways)]:
                m = rounds[-1][gw.label] = measure(gw, load, args, work)
                print(f"{gw.label:>14}: {m.run.rps:8,.0f} rps", file=sys.stderr, flush=True)
        ledgers = {}
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
            ledgers[gw.label] = flagged_rows(gw)
        print("\n".join(report(rounds, ledgers, args)))
    finally:
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
        if provider is not None:
            stop(provider)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
