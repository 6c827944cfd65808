"""``waystone demo``: the whole product offline, in a fresh temporary home, in seconds.

Writes a config with the built-in ``mock`` provider, a few users and groups and two
rulesets, starts ``waystone serve`` as a real process on a free loopback port, then shows:
a few streamed requests one by one (one downgraded and one blocked by a ruleset, with
the reasons the gateway gave), one call in Anthropic's Messages API, a burst of sample traffic, ``rules explain`` for one
user, the ``usage top`` tables (run in this process, through the daemon's admin
socket), and the commands to try next.  SIGTERM stops the daemon (it flushes the ledger).
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from waystone_cli.starter import STARTER

# The starter config (mock provider and its prices) plus users, groups and two rulesets.
DEMO_ENTITIES = """
[users.alice]
metadata = { tier = "free", region = "eu" }
groups = ["acme"]

[users.bob]
metadata = { tier = "pro" }

[users.erin]
metadata = { tier = "trial" }
groups = ["globex"]

[groups.acme]
metadata = { plan = "enterprise", region = "eu" }
credits = { usd = 500, window = "month" }

[groups.globex]
metadata = { plan = "team", region = "us" }

[rules.small-for-free]
model = "mock-large"
action = "change_model"
to = "local/mock-small"

[rules.no-large-on-trial]
model = "mock-large"
action = "block"
message = "trial accounts cannot use mock-large"

[rulesets.free-tier]
when = "user.tier = free"
rules = ["small-for-free"]

[rulesets.trial]
when = "user.tier = trial"
rules = ["no-large-on-trial"]
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
# Shown one by one: a downgrade, a request left alone, a block.
SHOWCASE = [
    ("alice", "acme", "mock-large"),
    ("bob", None, "mock-large"),
    ("erin", None, "mock-large"),
]
DEMO_SYSTEM = (
    "You are the assistant of a team that runs its language models through waystone. "
    "Answer briefly, name the model you are, and never invent usage figures."
)
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
    echo(f"waystone demo: a fresh home {home}, the gateway on http://127.0.0.1:{port}/v1,")
    echo("the built-in mock provider (offline), a DuckDB ledger.\n")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "waystone_cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(port, daemon)
        echo("Streamed requests, as the gateway answered them:")
        for user, group, model in SHOWCASE:
            echo("  " + _showcase(port, user, group, model))
        echo("An Anthropic-style call (POST /v1/messages, as the anthropic SDK sends it):")
        echo("  " + _anthropic_call(port, "bob", "mock-small"))
        sent = _send_traffic(port, requests)
        echo(
            f"\nThen, sent {sent} requests for {len(USERS)} users and 2 groups (streamed and not).\n"
        )
        _run_cli(env, echo, "rules", "explain", "--user", "alice", "--model", "mock-large")
        _run_cli(env, echo, "usage", "top", "--by", "user")
        _run_cli(env, echo, "usage", "top", "--by", "group")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        echo(_next_steps(home, keep))
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


def _next_steps(home: Path, keep: bool) -> str:
    where = f"WAYSTONE_HOME={home}"
    lines = [
        "",
        "Try next" + (":" if keep else " (run `waystone demo --keep` to keep the demo home):"),
        f"  {where} waystone usage show user alice",
        f"  {where} waystone rules explain --user erin --model mock-large",
        f"  {where} waystone serve      # the gateway again, on this ledger",
    ]
    return "\n".join(lines)


def _run_cli(env: dict[str, str], echo: Callable[[str], None], *args: str) -> None:
    """``waystone ARGS`` in this process (no second interpreter to start), on the demo home."""
    from waystone_cli.main import main

    echo(f"$ waystone {' '.join(args)}")
    with _environment(env):
        main(list(args))
    echo("")


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


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
    model = "mock-large" if i % 3 == 0 else "mock-small"
    prompt = f"{PROMPTS[i % len(PROMPTS)]} (#{i})"
    _post(port, user, group, model, prompt, stream=i % 2 == 1)
    return 1


def _showcase(port: int, user: str, group: str | None, model: str) -> str:
    """One streamed request, told as a line: who asked for what, and what happened why."""
    status, headers, body = _post(port, user, group, model, PROMPTS[0], stream=True)
    who = f"{user} ({group})" if group else user
    if status != 200:
        reason = json.loads(body)["error"]["message"]
        return f"{who} asks for {model}: {status}, {reason}"
    chunks = [line for line in body.splitlines() if line.startswith("data: {")]
    used, rulesets = headers.get("x-waystone-model", ""), headers.get("x-waystone-rulesets")
    why = f"ruleset {rulesets} changed the model" if used != f"local/{model}" else "as asked"
    return f"{who} asks for {model}: 200 from {used} ({why}), {len(chunks)} chunks streamed"


def _anthropic_call(port: int, user: str, model: str) -> str:
    """One call in Anthropic's Messages API, told as a line: its answer and its usage."""
    # A long system prompt marked for Anthropic's prompt cache: the mock reads part of
    # the input from its cache and writes part, as a real provider would.
    system = {"type": "text", "text": DEMO_SYSTEM, "cache_control": {"type": "ephemeral"}}
    body = {
        "model": model,
        "max_tokens": 256,
        "system": [system],
        "messages": [{"role": "user", "content": PROMPTS[1]}],
        "metadata": {"user_id": user},  # Anthropic's field: the user when nothing else names one
    }
    status, headers, text = _request(
        port, "/v1/messages", body, {"anthropic-version": "2023-06-01", "x-api-key": "demo"}
    )
    answer = json.loads(text)
    if status != 200:
        return f"{user} asks for {model}: {status}, {answer['error']['message']}"
    usage = answer["usage"]
    reads, writes = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    words = " ".join(answer["content"][0]["text"].split()[:7])
    return (
        f"{user} asks for {model}: 200 from {headers.get('x-waystone-model', '')}, "
        f'"{words} …", {usage["input_tokens"] + reads + writes} input tokens '
        f"({usage['input_tokens']} uncached, {reads} read from the cache, {writes} written"
        f" to it), {usage['output_tokens']} output tokens"
    )


def _post(
    port: int, user: str, group: str | None, model: str, prompt: str, *, stream: bool
) -> tuple[int, dict[str, str], str]:
    identity = {"user": user, **({"group": group} if group else {})}
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "metadata": {"waystone": json.dumps(identity)},
        "stream": stream,
    }
    return _request(port, "/v1/chat/completions", body, {})


def _request(
    port: int, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:  # a refusal is part of the show
        return err.code, dict(err.headers), err.read().decode()
