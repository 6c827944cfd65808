"""Memory per end user: the daemon's resident memory as distinct user ids keep coming.

    python bench/many_users.py                         # 1,000,000 users (long on 2 cores)
    python bench/many_users.py --users 300000 --clients 16

One ``waystone serve`` on the built-in mock provider, ledger on, with a per-user monthly
cost cap (so every request reads and charges its user's counters) and each user naming
itself with inline metadata (so the entity store merges it).  ``--clients`` keep-alive
connections (a raw HTTP/1.1 client: the load generator must not be the bottleneck) send
one chat request per user id, ``u0000000`` upwards, every id exactly once, until
``--users`` requests have been answered: the loop is bounded by that count.

After every ``--every`` users it prints the gateway's VmRSS and its growth since the
previous report; at the end, the growth per 100k users after the first report (the
first 100k also fill the bounded caches).  The target is under 20 MB per 100k users.
Any non-200 answer stops the run.

``--same-users N`` is the control: the same number of requests, but over N user ids
only, so what still grows is per request (DuckDB's cache of the ledger), not per user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

TARGET_MB_PER_100K = 20.0

CONFIG = """\
[server]
port = {port}

[ledger]
store_content = false

[providers.local]
kind = "mock"
models = ["mock-small"]

[prices."local/mock-small"]
input = 1.0
output = 2.0

[rules.cap-month]
usage = {{ metric = "cost_usd", window = "month", over = 1000000 }}
action = "block"

[rulesets.everyone]
when = "always"
rules = ["cap-month"]
"""


@dataclass
class Progress:
    total: int
    every: int
    pid: int
    pool: int = 0  # 0: every request a new user id
    next_id: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    reports: list[tuple[int, float]] = field(default_factory=list)

    def take(self) -> int | None:
        if self.next_id >= self.total:
            return None
        self.next_id += 1
        n = self.next_id - 1
        return n % self.pool if self.pool else n

    def answered(self) -> None:
        self.done += 1
        if self.done % self.every == 0:
            self.report()

    def report(self) -> None:
        rss = rss_mb(self.pid)
        grew = rss - self.reports[-1][1] if self.reports else 0.0
        rate = self.done / (time.monotonic() - self.started)
        print(f"{self.done:>9,} users  RSS {rss:7.1f} MB  (+{grew:6.1f} MB)  {rate:6.0f} req/s")
        self.reports.append((self.done, rss))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request_bytes(port: int, user: str) -> bytes:
    identity = json.dumps({"user": {"id": user, "metadata": {"tier": "free"}}})
    body = json.dumps(
        {
            "model": "mock-small",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"waystone": identity},
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of one response; its body is read by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def client(port: int, progress: Progress) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (n := progress.take()) is not None:
            writer.write(request_bytes(port, f"u{n:07d}"))
            status = await read_response(reader)
            if status != 200:
                raise SystemExit(f"user u{n:07d}: HTTP {status}")
            progress.answered()
    finally:
        writer.close()


async def drive(port: int, progress: Progress, clients: int) -> None:
    await asyncio.gather(*(client(port, progress) for _ in range(clients)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(home: Path, port: int) -> subprocess.Popen[bytes]:
    (home / "config.toml").write_text(CONFIG.format(port=port))
    env = {**os.environ, "WAYSTONE_HOME": str(home)}
    waystone = shutil.which("waystone", path=str(Path(sys.executable).parent)) or "waystone"
    proc = subprocess.Popen(
        [waystone, "serve"],
        stdout=(home / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (home / "serve.log").read_text()
            raise SystemExit(f"waystone serve exited with {proc.returncode}:\n{log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("waystone serve did not answer within 60 s")


def summary(progress: Progress) -> None:
    points = progress.reports
    if len(points) < 2:
        return
    (first_n, first_mb), (last_n, last_mb) = points[0], points[-1]
    per_100k = (last_mb - first_mb) / (last_n - first_n) * 100_000
    verdict = "met" if per_100k < TARGET_MB_PER_100K else "NOT met"
    print(
        f"growth after the first {first_n:,} users: {per_100k:.1f} MB per 100k users "
        f"(target < {TARGET_MB_PER_100K:.0f} MB: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--same-users", type=int, default=0, metavar="N")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="waystone-many-users-") as tmp:
        proc = start_gateway(Path(tmp), port)
        try:
            progress = Progress(
                total=args.users, every=args.every, pid=proc.pid, pool=args.same_users
            )
            print(f"start: RSS {rss_mb(proc.pid):.1f} MB")
            asyncio.run(drive(port, progress, args.clients))
            summary(progress)
        finally:
            proc.terminate()
            proc.wait(timeout=120)


if __name__ == "__main__":
    main()
