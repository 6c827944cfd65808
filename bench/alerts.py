"""The cost of ``[alerts]``: waystone with alerts on (a receiver on loopback) against the
same waystone with alerts off, JSON at concurrency 16 (bar: at least 0.95x the rps).

    python bench/alerts.py                 # ~2 minutes
    python bench/alerts.py --repeat 5 --duration 10
    python bench/alerts.py --spike         # the second gateway also has a spike rule

Both gateways run the proxy benchmark's setup (``bench/proxy``: the fake provider, wrk
with ``load.lua`` over 1,000 users in 50 groups, the gateway pinned to core 0, the
provider, wrk and the receiver on core 1) with the same config and one rule more than
the plain benchmark: a per-user ``usage`` rule on requests per day, over 4, whose action
(``retain``) never refuses, so every request is tested against it.  The second gateway
adds ``[alerts]`` with a webhook to a receiver (aiohttp, answers 204) and the default
thresholds: every user crosses 50%, 80% and 100% during the run, a few thousand signed
events stored and posted by the gateway while it serves, far more than real traffic
makes.  With ``--spike`` the second gateway also has a ``spike`` rule (``flag``, on
``cost_usd``, 1h against 7d, ``min`` out of reach) in the same ruleset, judged for the
user and the group of every request: the issue's bar, alerts and a spike rule on
against neither, on a gateway that has a budget rule either way.  The gateways take
turns run by run, so background load hits them alike.

Two phases, both reported: the *burst* (``--burst`` seconds, one run per gateway), in
which the events are made, stored and posted while the gateway serves; then, once the
gateway has delivered them all, the *steady state* (``--repeat`` alternating runs), in
which every request is past every threshold of both its user's and its group's budget,
so each request pays the outbox's worst case: one set lookup per crossing, six here.
Per run: requests per second and per CPU-second of each gateway and their ratios; at
the end the events the receiver got and the ledger holds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "proxy"))

from gateway_config import config_text  # noqa: E402
from load import Load  # noqa: E402
from processes import RssSampler, free_port, start, stop, wait_http  # noqa: E402
from report import Measurement  # noqa: E402
from run import GATEWAY_CORE, LOAD_CORE, ROOT, Gateway, measure, start_provider  # noqa: E402

RULE = """
[rules.daily-requests]
usage = { metric = "requests", window = "day", over = 4 }
action = "retain"
days = 90

[rulesets.everyone]
when = "always"
rules = ["daily-requests"]
"""

SPIKE = """
[rules.runaway]
spike = { metric = "cost_usd", window = "1h", factor = 10, baseline = "7d", min = 1000000 }
action = "flag"
"""

RECEIVER = """
import sys
from aiohttp import web
count = 0
async def hook(request):
    global count
    await request.read()
    count += 1
    return web.Response(status=204)
async def total(request):
    return web.json_response({"posts": count})
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", total)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def start_receiver(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port, log = free_port(), work / "receiver.log"
    proc = start([sys.executable, "-c", RECEIVER, str(port)], LOAD_CORE, log)
    wait_http(f"http://127.0.0.1:{port}/count", proc, log)
    return proc, port


def start_gateway(
    work: Path, label: str, provider_port: int, hook_port: int | None, spike: bool = False
) -> Gateway:
    home, port = work / label, free_port()
    home.mkdir()
    text = config_text(port, provider_port) + RULE
    if spike:
        text = text.replace('rules = ["daily-requests"]', 'rules = ["daily-requests", "runaway"]')
        text += SPIKE
    if hook_port is not None:
        text += (
            f'\n[alerts]\nwebhook = "http://127.0.0.1:{hook_port}/hook"\n'
            'secret = "env:BENCH_WEBHOOK_SECRET"\n'
        )
    (home / "config.toml").write_text(text)
    log = home / "serve.log"
    env = {
        "WAYSTONE_HOME": str(home),
        "BENCH_PROVIDER_KEY": "sk-bench",
        "BENCH_WEBHOOK_SECRET": "whsec-bench-0123456789",
        "PYTHONPATH": str(ROOT),
    }
    proc = start([sys.executable, "-m", "waystone_cli.main", "serve"], GATEWAY_CORE, log, env)
    wait_http(f"http://127.0.0.1:{port}/readyz", proc, log)
    return Gateway(label, port, proc, log, RssSampler(proc.pid), home=home)


def receiver_posts(port: int) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:
        return int(json.loads(resp.read())["posts"])


def ledger_alerts(home: Path) -> tuple[int, int]:
    """Events stored, and events with a delivered attempt, in the stopped gateway's ledger."""
    import duckdb

    path = sorted(home.rglob("*.duckdb"))[0]
    con = duckdb.connect(str(path), read_only=True)
    try:
        stored = con.execute("SELECT count(*) FROM alerts").fetchall()[0][0]
        delivered = con.execute(
            "SELECT count(DISTINCT alert_id) FROM alert_attempts WHERE error IS NULL"
        ).fetchall()[0][0]
    finally:
        con.close()
    return int(stored), int(delivered)


def pending_alerts(port: int) -> int:
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:  # 503 while the ledger queue catches up
        body = err.read()
    return int(json.loads(body)["checks"]["alerts"]["pending"])


def drain(gw: Gateway, timeout_s: float = 300.0) -> float:
    """Seconds until the gateway has no alert left to deliver."""
    began = time.monotonic()
    while pending_alerts(gw.port) and time.monotonic() - began < timeout_s:
        time.sleep(0.2)
    return time.monotonic() - began


def row(label: str, m_off: Measurement, m_on: Measurement) -> tuple[str, float, float]:
    eff_off, eff_on = m_off.run.requests / m_off.cpu_s, m_on.run.requests / m_on.cpu_s
    ratio, cpu_ratio = m_on.run.rps / m_off.run.rps, eff_on / eff_off
    errors = m_off.run.errors + m_on.run.errors
    line = (
        f"| {label} | {m_off.run.rps:,.0f} | {m_on.run.rps:,.0f} | {ratio:.3f} | "
        f"{eff_off:,.0f} | {eff_on:,.0f} | {cpu_ratio:.3f} | {errors} |"
    )
    print(line, file=sys.stderr, flush=True)
    return line, ratio, cpu_ratio


def main() -> None:
    p = argparse.ArgumentParser(description="waystone with [alerts] on vs off, json c16.")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--burst", type=float, default=15, help="seconds of the burst phase")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--spike", action="store_true", help="a spike rule on the alerts gateway")
    args = p.parse_args()
    args.profile = False
    work = Path(tempfile.mkdtemp(prefix="waystone-bench-alerts-"))
    procs: list[subprocess.Popen[bytes]] = []
    gateways: list[Gateway] = []
    lines = [
        "| run | off rps | on rps | on/off rps | off req/CPU-s | on req/CPU-s | on/off | errors |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|")
    try:
        provider, provider_port = start_provider(work)
        receiver, hook_port = start_receiver(work)
        procs += [provider, receiver]
        off = start_gateway(work, "alerts-off", provider_port, None)
        on = start_gateway(work, "alerts-on", provider_port, hook_port, spike=args.spike)
        gateways += [off, on]
        load = Load(args.connections, False, 1000, 50, False)
        # The burst: every user and group crosses 50%, 80% and 100% of its budget.
        burst = argparse.Namespace(**{**vars(args), "duration": args.burst, "warmup": 1})
        m_off, m_on = measure(off, load, burst, work), measure(on, load, burst, work)
        burst_line, burst_ratio, burst_cpu = row("burst", m_off, m_on)
        drained_s = drain(on)
        posts_after_burst = receiver_posts(hook_port)
        # Steady state: every request is past every threshold, each crossing a set lookup.
        ratios, cpu_ratios = [], []
        lines.append(burst_line)
        for i in range(args.repeat):
            m_off, m_on = measure(off, load, args, work), measure(on, load, args, work)
            line, ratio, cpu_ratio = row(str(i + 1), m_off, m_on)
            lines.append(line)
            ratios.append(ratio)
            cpu_ratios.append(cpu_ratio)
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
        posts = receiver_posts(hook_port)
        stored, delivered = ledger_alerts(on.home or work)
        lines += [
            "",
            f"burst ({args.burst:g} s, events made and posted while serving): on/off rps "
            f"{burst_ratio:.3f}, per CPU-second {burst_cpu:.3f}; {posts_after_burst} events "
            f"posted, the last {drained_s:.1f} s after the burst ended",
            f"steady state (median of {args.repeat}): on/off rps {statistics.median(ratios):.3f}, "
            f"requests per CPU-second {statistics.median(cpu_ratios):.3f} (bar: rps >= 0.95)",
            f"events: {stored} stored, {delivered} delivered, {posts} posts received "
            f"({posts - posts_after_burst} after the burst)",
        ]
    finally:
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
        for proc in procs:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
