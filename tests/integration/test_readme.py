"""The README's examples, run as written (the way sqlite-utils runs its docs).

Extraction rule, kept simple so a rewritten README still works:

- every fenced block opened with ```` ```bash ```` is read line by line; a line that
  starts with ``waystone `` is a command (a trailing ``# comment`` is dropped), any
  other line (an install step such as ``python3 -m venv …``) is not run here;
- every fenced block opened with ```` ```python ```` is a client snippet, run with
  ``exec`` once the gateway is up;
- commands run in README order, in a fresh ``WAYSTONE_HOME``; ``waystone serve`` starts
  the real daemon as a background process (on a free port, ``--port`` added) and the
  commands after it run against it; ``waystone demo`` is left to its own test.

Substitutions, the only edits made to the examples: the real provider base URL
``https://api.openai.com/v1`` becomes the fake provider's (``tests/integration/
fake_provider.py``), ``OPENAI_API_KEY`` is set to a dummy key, and the gateway address
``http://127.0.0.1:8787`` in a snippet becomes the daemon's.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fake_provider import FakeProvider
from tests.integration.test_process import _wait_ready
from waystone_cli.demo import free_port

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)
GATEWAY = "http://127.0.0.1:8787"
REAL_PROVIDER = "https://api.openai.com/v1"


def readme_steps() -> list[tuple[str, str]]:
    """``("command", "waystone …")`` and ``("python", source)`` steps, in README order."""
    steps: list[tuple[str, str]] = []
    for language, body in BLOCK.findall(README.read_text(encoding="utf-8")):
        if language == "python":
            steps.append(("python", body))
            continue
        for line in body.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command.startswith("waystone ") and command != "waystone demo":
                steps.append(("command", command))
    return steps


def test_the_readme_has_examples_to_run() -> None:
    kinds = [kind for kind, _ in readme_steps()]
    assert kinds.count("python") >= 1
    assert ("command", "waystone serve") in readme_steps()


async def test_the_readme_examples_run(waystone_home: Path, aiohttp_server: Any) -> None:
    provider = FakeProvider()
    upstream = await aiohttp_server(provider.app())
    env = {**os.environ, "OPENAI_API_KEY": "sk-readme-test", "COLUMNS": "100"}
    env.pop("WAYSTONE_CONFIG", None)
    port, daemon = free_port(), None
    outputs: dict[str, str] = {}
    try:
        for kind, text in readme_steps():
            if kind == "python":
                assert daemon is not None, "a client snippet before `waystone serve`"
                source = text.replace(GATEWAY, f"http://127.0.0.1:{port}")
                await asyncio.to_thread(exec, source, {"__name__": "readme"})
                continue
            args = shlex.split(text.replace(REAL_PROVIDER, str(upstream.make_url("/v1"))))[1:]
            if args == ["serve"]:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "waystone_cli.main", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                await asyncio.to_thread(_wait_ready, port, daemon)
                continue
            run = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "waystone_cli.main", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, f"{text}\n{run.stdout}\n{run.stderr}"
            outputs[" ".join(args[:2])] = run.stdout
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
    # The snippet's request reached the provider, and the reports name alice for it.
    assert [s.path for s in provider.seen] == ["/v1/chat/completions"]
    assert provider.seen[0].body["model"] == "gpt-4o-mini"
    assert outputs["usage top"].splitlines()[3].split()[:2] == ["alice", "1"]
    assert outputs["usage show"].startswith("User alice, ")
