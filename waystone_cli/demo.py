"""``waystone demo``: the whole product offline, in a fresh temporary home.

Writes a config with the built-in ``mock`` provider, starts ``waystone serve`` as a real
process on a free loopback port, sends sample traffic (streamed and not) for several
users and groups, prints ``waystone usage top`` while the daemon is up (through its
admin socket), then stops it with SIGTERM (which flushes the ledger).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from waystone_cli.starter import STARTER

# The starter config (mock provider and its prices) plus a few users, groups and a rule.
DEMO_ENTITIES = """
[users.alice]
metadata = { tier = "free", region = "eu" }
groups = ["acme"]

[users.bob]
metadata = { tier = "pro" }

[groups.acme]
metadata = { plan = "enterprise", region = "eu" }
credits = { usd = 500, window = "month" }

[rules.small-for-free]
model = "mock-large"
action = "change_model"
to = "local/mock-small"

[rulesets.free-tier]
when = "user.tier = free"
rules = ["small-for-free"]
"""


def demo_config(port: int) -> str:
    """The starter on ``port``; ``tests/integration/test_process.py`` runs the demo whole."""
    return STARTER.replace("port = 8787", f"port = {port}", 1) + DEMO_ENTITIES


USERS = [
    ("alice", "acme"),
    ("bob", None),
    ("carol", "acme"),
    ("dave", "globex"),
    ("erin", "globex"),
    ("frank", None),
]
PROMPTS = ["Summarise our Q3 numbers", "Write a haiku about gateways", "Explain DuckDB in one line"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(*, requests: int, keep: bool, echo: Callable[[str], None]) -> None:
    home = Path(tempfile.mkdtemp(prefix="waystone-demo-"))
    port = free_port()
    (home / "config.toml").write_text(demo_config(port))
    env = _env(home)
    echo(f"waystone demo — home {home}, gateway on http://127.0.0.1:{port}/v1 (mock provider)")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "waystone_cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, daemon)
        sent = _send_traffic(port, requests)
        echo(f"sent {sent} requests for {len(USERS)} users and 2 groups (streamed and not)\n")
        subprocess.run(
            [sys.executable, "-m", "waystone_cli.main", "usage", "top", "--by", "user"],
            env=env,
            check=True,
        )
        subprocess.run(
            [sys.executable, "-m", "waystone_cli.main", "usage", "top", "--by", "group"],
            env=env,
            check=True,
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if keep:
            echo(f"\nkept the demo home: WAYSTONE_HOME={home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, WAYSTONE_HOME=str(home))
    env.pop("WAYSTONE_CONFIG", None)
    return env


def _wait_ready(port: int, daemon: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            err = daemon.stderr.read().decode() if daemon.stderr else ""
            raise RuntimeError(f"the daemon exited early: {err.strip()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError("the daemon did not become ready in time")


def _send_traffic(port: int, count: int) -> int:
    jobs = [(i, *USERS[i % len(USERS)]) for i in range(count)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        return sum(pool.map(lambda job: _one(port, *job), jobs))


def _one(port: int, i: int, user: str, group: str | None) -> int:
    identity: dict[str, Any] = {"user": user}
    if group:
        identity["group"] = group
    body: dict[str, Any] = {
        "model": "mock-large" if i % 3 == 0 else "mock-small",
        "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (#{i})"}],
        "metadata": {"waystone": json.dumps(identity)},
        "stream": i % 2 == 1,
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()
        return 1
