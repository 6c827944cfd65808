"""What tracing costs: waystone's throughput with ``[otel] endpoint`` set, against without.

    python bench/tracing_overhead.py                 # ~1.5 minutes
    python bench/tracing_overhead.py --rounds 5 --seconds 15

Two ``waystone serve`` processes run on the built-in mock provider, identical but for
``[otel] endpoint``: one exports every request's spans (a SERVER span and its upstream
CLIENT span) over OTLP/HTTP to a no-op receiver, the other has tracing off.  Both run
with the ledger on and every request naming a user and a group.  The gateways are
pinned to core 0; wrk and the receiver share core 1, so the SDK's export thread is paid
for on the gateway's own core, as it would be in production.

The two take turns for ``--rounds`` rounds (a warm-up, then a measured wrk run each), so
background load on a shared machine hits both alike.  The result is the ratio of the
median requests per second, traced over untraced; the bar (issue 6) is at least 0.90.
The receiver's span count is printed too: an exporter that drops spans under load would
make tracing look cheaper than it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

GATEWAY_CORE, LOAD_CORE = "0", "1"
BAR = 0.90

CONFIG = """\
[server]
port = {port}

[providers.local]
kind = "mock"
models = ["mock-small"]

[prices."local/mock-small"]
input = 1.0
output = 2.0
"""

OTEL = """
[otel]
endpoint = "http://127.0.0.1:{port}"
service_name = "waystone-bench"
"""

# A no-op OTLP/HTTP collector: reads each export, counts its spans, answers success.
RECEIVER = """
import sys
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)

spans = 0
OK = ExportTraceServiceResponse().SerializeToString()

async def traces(request):
    global spans
    export = ExportTraceServiceRequest.FromString(await request.read())
    spans += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
    return web.Response(body=OK, content_type="application/x-protobuf")

async def count(request):
    return web.Response(text=str(spans))

app = web.Application(client_max_size=64 << 20)
app.router.add_post("/v1/traces", traces)
app.router.add_get("/count", count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

LUA = """
local n = 0
request = function()
  n = n + 1
  local user = "u" .. (n % 1000)
  local body = '{"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]}'
  return wrk.format("POST", "/v1/chat/completions", {
    ["Content-Type"] = "application/json",
    ["X-Waystone-User"] = user,
    ["X-Waystone-Group"] = "g" .. (n % 50),
  }, body)
end
"""


@dataclass
class Gateway:
    label: str
    port: int
    proc: subprocess.Popen[bytes]
    rps: list[float] = field(default_factory=list)
    requests: int = 0  # every request wrk sent, warm-ups included
    cpu_us: list[float] = field(default_factory=list)  # gateway CPU per measured request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {deadline_s} s")


def pinned(
    core: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", core, *cmd], stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env
    )


def start_gateway(work: Path, label: str, otel_port: int | None) -> Gateway:
    home = work / label
    home.mkdir()
    port = free_port()
    config = CONFIG.format(port=port) + (OTEL.format(port=otel_port) if otel_port else "")
    (home / "config.toml").write_text(config)
    env = {**os.environ, "WAYSTONE_HOME": str(home)}
    waystone = shutil.which("waystone", path=str(Path(sys.executable).parent)) or "waystone"
    proc = pinned(GATEWAY_CORE, [waystone, "serve"], home / "serve.log", env)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return Gateway(label, port, proc)


def run_wrk(port: int, seconds: float, connections: int, lua: Path) -> tuple[int, float]:
    """The requests wrk completed, and their rate."""
    cmd = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}/v1/chat/completions",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    done = next(x for x in out.splitlines() if " requests in " in x)
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return int(done.split()[0]), float(line.split()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (the exporter's too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_seconds(pid: int) -> float:
    """CPU time of the main thread alone (the event loop); the rest is the ledger writer's
    and, traced, the span exporter's threads."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waystone-tracing-bench-"))
    lua = work / "load.lua"
    lua.write_text(LUA)
    (work / "receiver.py").write_text(textwrap.dedent(RECEIVER))
    receiver_port = free_port()
    receiver = pinned(
        LOAD_CORE,
        [sys.executable, str(work / "receiver.py"), str(receiver_port)],
        work / "receiver.log",
    )
    gateways: list[Gateway] = []
    try:
        wait_http(f"http://127.0.0.1:{receiver_port}/count", receiver)
        gateways = [
            start_gateway(work, "untraced", None),
            start_gateway(work, "traced", receiver_port),
        ]
        for i in range(args.rounds):
            for gw in gateways if i % 2 == 0 else reversed(gateways):
                gw.requests += run_wrk(gw.port, args.warmup, args.connections, lua)[0]
                cpu, main_cpu = cpu_seconds(gw.proc.pid), main_thread_seconds(gw.proc.pid)
                requests, rps = run_wrk(gw.port, args.seconds, args.connections, lua)
                gw.cpu_us.append((cpu_seconds(gw.proc.pid) - cpu) / requests * 1e6)
                main_us = (main_thread_seconds(gw.proc.pid) - main_cpu) / requests * 1e6
                gw.requests += requests
                gw.rps.append(rps)
                print(
                    f"round {i + 1} {gw.label:9} {rps:8.0f} rps {gw.cpu_us[-1]:8.0f} µs CPU/request"
                    f" ({main_us:.0f} on the event loop's thread)",
                    flush=True,
                )
        for gw in gateways:
            stop(gw.proc)  # the traced one flushes its last spans on the way out
        spans = int(urllib.request.urlopen(f"http://127.0.0.1:{receiver_port}/count").read())
    finally:
        for gw in gateways:
            if gw.proc.poll() is None:
                stop(gw.proc)
        stop(receiver)
    report(gateways, spans, args)
    shutil.rmtree(work, ignore_errors=True)


def report(gateways: list[Gateway], spans: int, args: argparse.Namespace) -> None:
    untraced, traced = (statistics.median(gw.rps) for gw in gateways)
    ratio = traced / untraced
    cpu_untraced, cpu_traced = (statistics.median(gw.cpu_us) for gw in gateways)
    print()
    print(f"untraced median {untraced:8.0f} rps   runs {[round(r) for r in gateways[0].rps]}")
    print(f"traced   median {traced:8.0f} rps   runs {[round(r) for r in gateways[1].rps]}")
    print(
        f"CPU per request: untraced {cpu_untraced:.0f} µs, traced {cpu_traced:.0f} µs "
        f"(+{cpu_traced / cpu_untraced - 1:.1%}); the throughput a saturated core can give "
        f"traced is {cpu_untraced / cpu_traced:.3f} of untraced"
    )
    print(
        f"ratio traced/untraced {ratio:.3f} (bar: at least {BAR:.2f}): "
        f"{'PASS' if ratio >= BAR else 'FAIL'}"
    )
    expected = 2 * gateways[1].requests  # a SERVER and a CLIENT span per request
    print(
        f"spans received {spans} of {expected} ({spans / expected:.1%}); dropped spans "
        "would make tracing look cheaper than it is"
    )


if __name__ == "__main__":
    main()
