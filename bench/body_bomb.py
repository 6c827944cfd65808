"""How much memory does the daemon take while a client sends it a gzip bomb?

Starts ``waystone serve`` (a mock provider, ``[server] max_body_mb = LIMIT``) in a
temporary WAYSTONE_HOME, answers one ordinary chat to warm it up, then sends a chat body
of BOMB MiB of spaces gzipped (about 1/1000 of that on the wire) with ``Content-Encoding:
gzip`` and a Content-Length, sampling the daemon's VmRSS every 5 ms from a thread until
the answer arrives and AFTER seconds more.  Prints the idle and peak RSS, their ratio,
the status, the time to the answer and the CPU the daemon spent.

    python bench/body_bomb.py [--bomb-mib 512] [--limit-mb 1] [--after 11] [--source DIR]

``--source`` runs the daemon from another checkout (``git archive <commit> | tar -x -C
DIR``) to compare with the code before a change.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

from waystone_cli.demo import free_port

CONFIG = """\
[server]
port = {port}
max_body_mb = {limit}

[providers.local]
kind = "mock"
models = ["mock-small"]
"""
HEAD = b'{"model": "mock-small", "messages": [{"role": "user", "content": "'
TAIL = b'"}]}'


def gzip_bomb(mib: int) -> bytes:
    packer = zlib.compressobj(9, wbits=31)
    spaces = b" " * (1 << 20)
    parts = [packer.compress(HEAD)]
    parts += [packer.compress(spaces) for _ in range(mib)]
    return b"".join([*parts, packer.compress(TAIL), packer.flush()])


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/chat/completions", body, headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def start_daemon(home: Path, port: int, source: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WAYSTONE_HOME": str(home)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "waystone_cli.main", "serve"],
        env=env,
        cwd=home,  # not this checkout: ``-m`` puts the working directory first on the path
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("daemon not ready")


def measure(port: int, pid: int, bomb: bytes, after: float) -> dict[str, float]:
    chat = HEAD + b"hello" + TAIL
    post(port, chat, {"Content-Type": "application/json"})
    time.sleep(1)
    idle = rss_bytes(pid)
    peak = idle
    cpu_before = cpu_seconds(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss_bytes(pid))

    sampler = threading.Thread(target=sample, name="rss")
    sampler.start()
    started = time.perf_counter()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    try:
        status, _ = post(port, bomb, headers)
    finally:
        seconds = time.perf_counter() - started
        # aiohttp reads and discards an unread body for up to 10 s after the answer
        # (lingering close), inflating it: that time counts too.
        time.sleep(after)
        done.set()
        sampler.join()
    return {
        "status": status,
        "seconds": seconds,
        "idle_mb": idle / 2**20,
        "peak_mb": peak / 2**20,
        "cpu_s": cpu_seconds(pid) - cpu_before,
    }


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bomb-mib", type=int, default=512)
    parser.add_argument("--limit-mb", type=float, default=1)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--after", type=float, default=11, help="seconds sampled after")
    args = parser.parse_args()
    bomb = gzip_bomb(args.bomb_mib)
    with tempfile.TemporaryDirectory(prefix="waystone-bomb-") as tmp:
        port = free_port()
        (Path(tmp) / "config.toml").write_text(CONFIG.format(port=port, limit=args.limit_mb))
        proc = start_daemon(Path(tmp), port, args.source)
        try:
            result = measure(port, proc.pid, bomb, args.after)
        finally:
            proc.terminate()
            proc.wait(30)
    result["ratio"] = result["peak_mb"] / result["idle_mb"]
    print(json.dumps({"bomb_mib": args.bomb_mib, "sent_kb": len(bomb) // 1024, **result}))


if __name__ == "__main__":
    main()
