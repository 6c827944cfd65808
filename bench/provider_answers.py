"""The daemon's peak memory against a provider that sends too much.

    python bench/provider_answers.py               # about a minute
    python bench/provider_answers.py --gib 1 --max-response-mb 16

A fake provider in this process, on 127.0.0.1, answers each model in its own way:

- ``big-json``: a JSON answer of ``--gib`` GiB, written as fast as the socket takes it;
- ``big-stream``: an SSE stream of ``--gib`` GiB (chat chunks of 1,000 characters);
- ``gzip-bomb``: a gzip answer of about 1 MB that inflates to 1 GiB;
- ``held-stream``: ``big-stream`` again, with a blocking output check in force, so the
  daemon holds the stream back (and reads all of its text) until it is over.

For each case a fresh ``waystone serve`` (default ``[server] max_response_mb``, unless
``--max-response-mb``) gets one chat request for that model from a client here that
reads the whole answer; the result is the daemon's peak resident memory (``VmHWM``), its
resident memory when idle before the request, what the provider managed to send and
what the client got.  The bar (issue 15) is a peak under 300 MB.
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
import zlib
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, web

BAR_MB = 300
CASES = ("big-json", "big-stream", "gzip-bomb", "held-stream")
PIECE = 1 << 20

CONFIG = """\
[server]
port = {port}
{limit}
[providers.bad]
base_url = "http://127.0.0.1:{upstream}/v1"
models = ["big-json", "big-stream", "gzip-bomb"]
"""

HOLD_BACK = """
[rules.no-keys]
action = "check_output"
deny_regex = "sk-[a-z0-9]{20}"
on_fail = "block"

[rulesets.checked]
when = "always"
rules = ["no-keys"]
"""


class Provider:
    def __init__(self, gib: float) -> None:
        self.size = int(gib * (1 << 30))
        self.sent = 0
        self.bomb = _gzip_bomb(1 << 30)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        model = (await request.json())["model"]
        self.sent = 0
        if model == "gzip-bomb":
            self.sent = len(self.bomb)
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            return web.Response(body=self.bomb, headers=headers)
        stream = model == "big-stream"
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream" if stream else "application/json"}
        )
        await resp.prepare(request)
        piece = _events(PIECE) if stream else b"x" * PIECE
        try:
            if not stream:
                await resp.write(b'{"padding": "')
            for _ in range(self.size // len(piece)):
                await resp.write(piece)
                self.sent += len(piece)
        except ConnectionError:
            pass  # the gateway hung up, as it should
        return resp


def _events(size: int) -> bytes:
    delta = {"content": "x" * 1000}
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}
    event = f"data: {json.dumps(chunk)}\n\n".encode()
    return event * (size // len(event))


def _gzip_bomb(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * PIECE
    parts = [packer.compress(zeros) for _ in range(size // PIECE)]
    return b"".join(parts) + packer.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def wait_http(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the gateway exited with {proc.returncode}")
        try:
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).read())
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {deadline_s} s")


async def run_case(
    case: str, provider: Provider, upstream: int, work: Path, limit: str
) -> dict[str, object]:
    home = work / case
    home.mkdir()
    port = free_port()
    config = CONFIG.format(port=port, upstream=upstream, limit=limit)
    model = "big-stream" if case == "held-stream" else case
    (home / "config.toml").write_text(config + (HOLD_BACK if case == "held-stream" else ""))
    env = {**os.environ, "WAYSTONE_HOME": str(home)}
    waystone = shutil.which("waystone", path=str(Path(sys.executable).parent)) or "waystone"
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([waystone, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        idle_kb = status_kb(proc.pid, "VmRSS")
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        body["stream"] = model == "big-stream"
        got = 0
        async with (
            ClientSession(timeout=ClientTimeout(total=300)) as http,
            http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as resp,
        ):
            async for data in resp.content.iter_any():
                got += len(data)
            status = resp.status
        peak_kb = status_kb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "model": case,
        "status": status,
        "idle_mb": idle_kb / 1024,
        "peak_mb": peak_kb / 1024,
        "sent_mb": provider.sent / (1 << 20),
        "got_mb": got / (1 << 20),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--max-response-mb", type=float, default=None)
    args = parser.parse_args()
    limit = f"max_response_mb = {args.max_response_mb:g}" if args.max_response_mb else ""
    provider = Provider(args.gib)
    runner = web.AppRunner(provider.app())
    await runner.setup()
    upstream = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream).start()
    failed = False
    try:
        with tempfile.TemporaryDirectory() as work:
            for case in CASES:
                r = await run_case(case, provider, upstream, Path(work), limit)
                ok = float(str(r["peak_mb"])) < BAR_MB
                failed |= not ok
                print(
                    f"{r['model']:<11} status {r['status']}  idle {r['idle_mb']:.0f} MB  "
                    f"peak {r['peak_mb']:.0f} MB  provider sent {r['sent_mb']:.1f} MiB  "
                    f"client got {r['got_mb']:.1f} MiB  {'ok' if ok else 'OVER THE BAR'}"
                )
    finally:
        await runner.cleanup()
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    asyncio.run(main())
