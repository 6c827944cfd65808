"""CPU per upstream call: aiohttp's ``ClientSession`` against ``daemon/providers/http_client.py``.

    python bench/upstream_client.py                     # ~1 minute
    python bench/upstream_client.py --seconds 3 --rounds 2

The gateway's side of a provider call, alone: a POST of a small chat request and the
read of its JSON answer (about 450 bytes), by

- ``aiohttp``: one ``ClientSession`` as the daemon had it (``TCPConnector(limit=0)``,
  ``auto_decompress``), ``session.request("POST", url, data=..., headers=...,
  timeout=ClientTimeout(total=None, sock_connect=10, sock_read=600))``, ``resp.read()``,
  ``resp.close()``;
- ``http_client``: one ``HttpClient``, ``client.request("POST", url, headers, body)``,
  ``r.read()``, ``r.release()``.

Both run in this process, pinned to core 0, on uvloop, with 16 coroutines calling in a
loop, against the fake provider of the proxy benchmark (``bench/proxy/provider.py``)
pinned to core 1.  Each round runs each client for a 1 s warm-up (which also fills its
pool) and then ``--seconds`` measured, the order alternating from round to round.  A
round reports requests per second and CPU microseconds per request (this process's
``time.process_time()`` over the requests completed, and how much of it was the
kernel's, in the sockets' system calls); the result is the median of the per-round
ratios, aiohttp's CPU per request over http_client's.  The provider's CPU is not
counted: it is the same for both.  The figures include this script's own loop (16
coroutines and their deadline checks), a few µs per request for both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.proxy.processes import free_port, start, stop, wait_http  # noqa: E402
from daemon.providers.http_client import HttpClient  # noqa: E402

CLIENT_CORE, PROVIDER_CORE = 0, 1
PROVIDER = Path(__file__).resolve().parent / "proxy" / "provider.py"
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
BODY = (
    b'{"model": "bench-model", "messages": [{"role": "user", "content": "Say hello"}], '
    b'"metadata": {"waystone": "{\\"user\\": \\"u1\\", \\"group\\": \\"g1\\"}"}}'
)

Call = Callable[[], Awaitable[bytes]]


@dataclass
class Variant:
    label: str
    call: Call
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    sys_us: list[float] = field(default_factory=list)  # the kernel's part of cpu_us


def aiohttp_call(session: aiohttp.ClientSession, url: str) -> Call:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)

    async def call() -> bytes:
        resp = await session.request("POST", url, data=BODY, headers=HEADERS, timeout=timeout)
        body = await resp.read()
        resp.close()
        if resp.status != 200:
            raise SystemExit(f"aiohttp: HTTP {resp.status}")
        return body

    return call


def http_client_call(client: HttpClient, url: str) -> Call:
    async def call() -> bytes:
        r = await client.request("POST", url, HEADERS, BODY)
        body = await r.read()
        r.release()
        if r.status != 200:
            raise SystemExit(f"http_client: HTTP {r.status}")
        return body

    return call


async def drive(call: Call, seconds: float, concurrency: int) -> int:
    """Calls from ``concurrency`` coroutines until ``seconds`` pass; the calls completed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while loop.time() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def measure(variant: Variant, args: argparse.Namespace) -> None:
    await drive(variant.call, args.warmup, args.concurrency)
    wall, cpu, kernel = time.perf_counter(), time.process_time(), system_seconds()
    requests = await drive(variant.call, args.seconds, args.concurrency)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    variant.rps.append(requests / wall)
    variant.cpu_us.append(cpu / requests * 1e6)
    variant.sys_us.append((system_seconds() - kernel) / requests * 1e6)


def system_seconds() -> float:
    """CPU time spent in the kernel for this process: the sockets' system calls."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


async def bench(url: str, args: argparse.Namespace) -> list[Variant]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
    client = HttpClient()
    variants = [
        Variant("aiohttp", aiohttp_call(session, url)),
        Variant("http_client", http_client_call(client, url)),
    ]
    try:
        answers = {v.label: await v.call() for v in variants}
        if answers["aiohttp"] != answers["http_client"]:
            raise SystemExit("the two clients read different answers")
        for i in range(args.rounds):
            for variant in variants if i % 2 == 0 else reversed(variants):
                await measure(variant, args)
                print(
                    f"round {i + 1} {variant.label:11} {variant.rps[-1]:8.0f} rps"
                    f" {variant.cpu_us[-1]:7.1f} µs CPU/request"
                    f" ({variant.sys_us[-1]:.1f} in the kernel)",
                    flush=True,
                )
    finally:
        await session.close()
        client.close()
    return variants


def report(variants: list[Variant]) -> None:
    old, new = variants
    print()
    for v in variants:
        print(
            f"{v.label:11} median {statistics.median(v.rps):8.0f} rps"
            f" {statistics.median(v.cpu_us):7.1f} µs CPU/request"
            f" ({statistics.median(v.sys_us):.1f} in the kernel)"
            f"   runs {[round(us, 1) for us in v.cpu_us]}"
        )
    ratios = [a / b for a, b in zip(old.cpu_us, new.cpu_us, strict=True)]
    print(
        f"CPU per request, aiohttp/http_client: {statistics.median(ratios):.2f}x"
        f" (median of the rounds' {[round(r, 2) for r in ratios]})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CORE})
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="waystone-client-bench-")) / "provider.log"
    provider = start([sys.executable, str(PROVIDER), "--port", str(port)], PROVIDER_CORE, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/", provider, log)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        variants = uvloop.run(bench(url, args))
    finally:
        stop(provider)
    report(variants)


if __name__ == "__main__":
    main()
