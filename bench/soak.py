"""A long soak: is waystone's memory flat under steady traffic? (SPEC §11)

    python bench/soak.py                       # 30 minutes at 300 requests a second
    python bench/soak.py --minutes 3 --rps 100 # a quick look

It starts the proxy benchmark's fast fake provider and ``waystone serve`` (the same
config as ``bench/proxy/run.py``: one priced provider, the ledger on), then sends a
steady, paced load from this process: chat completions, every second one streamed,
naming users that rotate over ``--users`` ids in 50 groups.  The load is paced (a
request starts every 1/rps seconds, at most ``--concurrency`` in flight), so the
gateway is never saturated and what is measured is memory, not throughput.

Every 10 seconds it samples the gateway's VmRSS.  The bar: after the first five minutes
(the warm-up, in which caches, DuckDB's buffers and the allocator's arenas fill; half
the run when it is shorter than ten minutes) the RSS
stays within 10 MB (max minus min).  At the end the gateway gets SIGTERM and its ledger
is opened read-only: every answered request must have its row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent / "proxy"))

from processes import RssSampler, stop  # noqa: E402
from run import start_provider, start_waystone  # noqa: E402

WARMUP_S = 300.0
SAMPLE_EVERY_S = 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rps", type=float, default=300.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    return parser.parse_args()


def body(i: int, users: int) -> bytes:
    user = i % users
    identity = json.dumps({"user": f"u{user}", "group": f"g{user % 50}"})
    payload: dict[str, object] = {
        "model": "bench/bench-model",
        "messages": [{"role": "user", "content": f"soak request {i}"}],
        "metadata": {"waystone": identity},
    }
    if i % 2:
        payload["stream"] = True
    return json.dumps(payload).encode()


async def load(port: int, args: argparse.Namespace, sampler: RssSampler) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    limit = asyncio.Semaphore(args.concurrency)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    samples: list[tuple[float, float]] = []
    total = int(args.minutes * 60 * args.rps)
    tasks: set[asyncio.Task[None]] = set()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        try:
            async with session.post(url, data=body(i, args.users), headers=headers) as resp:
                await resp.read()
                counts["ok" if resp.status == 200 else "failed"] += 1
        except aiohttp.ClientError:
            counts["failed"] += 1
        finally:
            limit.release()

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        next_sample = 0.0
        for i in range(total):
            due = started + i / args.rps
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if now - started >= next_sample:
                samples.append((now - started, sampler.rss_mb()))
                print(f"{(now - started) / 60:6.1f} min  RSS {samples[-1][1]:7.1f} MB", flush=True)
                next_sample += SAMPLE_EVERY_S
            if limit.locked():
                counts["skipped"] += 1  # the gateway fell behind; pacing never queues
                continue
            await limit.acquire()
            task = asyncio.create_task(one(session, i), name=f"soak-{i}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        samples.append((time.monotonic() - started, sampler.rss_mb()))
    return {"counts": counts, "samples": samples}


def ledger_rows(home: Path) -> int:
    import duckdb

    path = next(home.rglob("*.duckdb"))
    with duckdb.connect(str(path), read_only=True) as db:
        row = db.execute("SELECT count(*) FROM requests WHERE outcome = 'ok'").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="waystone-soak-") as tmp:
        work = Path(tmp)
        provider, provider_port = start_provider(work)
        gateway = start_waystone(work, "waystone", provider_port, rulesets=0)
        try:
            result = asyncio.run(load(gateway.port, args, gateway.sampler))
        finally:
            stop(gateway.proc)
            gateway.sampler.close()
            stop(provider)
        assert gateway.home is not None
        rows = ledger_rows(gateway.home)
    report(args, result, rows)


def report(args: argparse.Namespace, result: dict[str, object], rows: int) -> None:
    samples = result["samples"]
    counts = result["counts"]
    assert isinstance(samples, list) and isinstance(counts, dict)
    settled = [rss for at, rss in samples if at >= min(WARMUP_S, args.minutes * 30)]
    spread = max(settled) - min(settled) if settled else float("nan")
    print()
    print(f"{args.minutes:g} min at {args.rps:g} rps over {args.users} users: {counts}")
    print(
        f"RSS first {samples[0][1]:.1f} MB, last {samples[-1][1]:.1f} MB, peak "
        f"{max(r for _, r in samples):.1f} MB"
    )
    print(
        f"after the warm-up: min {min(settled):.1f}, max {max(settled):.1f}, "
        f"spread {spread:.1f} MB (bar: < 10 MB)"
    )
    print(
        f"ledger: {rows} ok rows for {counts['ok']} answered requests"
        f" ({'none lost' if rows >= counts['ok'] else 'ROWS LOST'})"
    )


if __name__ == "__main__":
    main()
