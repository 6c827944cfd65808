"""The cost of ``[alerts]``: waystone with alerts on (a receiver on loopback) against the
same waystone with alerts off, JSON at concurrency 16 (bar: at least 0.95x the rps).

    python bench/alerts.py                 # ~2 minutes
    python bench/alerts.py --repeat 5 --duration 10

Both gateways run the proxy benchmark's setup (``bench/proxy``: the fake provider, wrk
with ``load.lua`` over 1,000 users in 50 groups, the gateway pinned to core 0, the
provider, wrk and the receiver on core 1) with the same config and one rule more than
the plain benchmark: a per-user ``usage`` rule on requests per day, over 20, whose action
(``retain``) never refuses, so every request is tested against it.  The second gateway
adds ``[alerts]`` with a webhook to a receiver (aiohttp, answers 204) and the default
thresholds: every user crosses 50%, 80% and 100% during the run, a few thousand signed
events stored and posted by the gateway while it serves, far more than real traffic
makes.  The gateways take turns run by run, so background load hits them alike.

Reported per run: requests per second and per CPU-second of each, their ratios, and at
the end the events the receiver got and the ledger holds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "proxy"))

from gateway_config import config_text  # noqa: E402
from load import Load  # noqa: E402
from processes import RssSampler, free_port, start, stop, wait_http  # noqa: E402
from run import GATEWAY_CORE, LOAD_CORE, ROOT, Gateway, measure, start_provider  # noqa: E402

RULE = """
[rules.daily-requests]
usage = { metric = "requests", window = "day", over = 20 }
action = "retain"
days = 90

[rulesets.everyone]
when = "always"
rules = ["daily-requests"]
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


def start_gateway(work: Path, label: str, provider_port: int, hook_port: int | None) -> Gateway:
    home, port = work / label, free_port()
    home.mkdir()
    text = config_text(port, provider_port) + RULE
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


def main() -> None:
    p = argparse.ArgumentParser(description="waystone with [alerts] on vs off, json c16.")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args()
    args.profile = False
    work = Path(tempfile.mkdtemp(prefix="waystone-bench-alerts-"))
    procs: list[subprocess.Popen[bytes]] = []
    gateways: list[Gateway] = []
    try:
        provider, provider_port = start_provider(work)
        receiver, hook_port = start_receiver(work)
        procs += [provider, receiver]
        off = start_gateway(work, "alerts-off", provider_port, None)
        on = start_gateway(work, "alerts-on", provider_port, hook_port)
        gateways += [off, on]
        load = Load(args.connections, False, 1000, 50, False)
        lines = ["| run | off rps | on rps | on/off rps | off req/CPU-s | on req/CPU-s | on/off |"]
        lines.append("|---|---|---|---|---|---|---|")
        ratios, cpu_ratios = [], []
        for i in range(args.repeat):
            m_off = measure(off, load, args, work)
            m_on = measure(on, load, args, work)
            eff_off, eff_on = m_off.run.requests / m_off.cpu_s, m_on.run.requests / m_on.cpu_s
            ratios.append(m_on.run.rps / m_off.run.rps)
            cpu_ratios.append(eff_on / eff_off)
            errors = m_off.run.errors + m_on.run.errors
            lines.append(
                f"| {i + 1} | {m_off.run.rps:,.0f} | {m_on.run.rps:,.0f} | {ratios[-1]:.3f} | "
                f"{eff_off:,.0f} | {eff_on:,.0f} | {cpu_ratios[-1]:.3f} |"
                + (f" errors {errors}" if errors else "")
            )
            print(lines[-1], file=sys.stderr, flush=True)
        for gw in gateways:
            gw.sampler.close()
            stop(gw.proc)
        posts = receiver_posts(hook_port)
        stored, delivered = ledger_alerts(on.home or work)
        lines += [
            "",
            f"median on/off: rps {statistics.median(ratios):.3f}, "
            f"requests per CPU-second {statistics.median(cpu_ratios):.3f} (bar: rps >= 0.95)",
            f"events: {stored} stored, {delivered} delivered, {posts} posts received",
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
