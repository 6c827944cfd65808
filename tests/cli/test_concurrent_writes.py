"""Real ``waystone`` processes started at once never lose each other's updates."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_twenty_concurrent_user_adds_leave_twenty_users(waystone_home: Path) -> None:
    env = {**os.environ, "WAYSTONE_HOME": str(waystone_home), "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "waystone_cli.main",
                "user",
                "add",
                f"user-{i}",
                "--meta",
                f"n={i}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert results == [(0, f"Added user user-{i}.\n", "") for i in range(20)]
    users = tomllib.loads((waystone_home / "config.toml").read_text())["users"]
    assert {u: e["metadata"] for u, e in users.items()} == {
        f"user-{i}": {"n": i} for i in range(20)
    }
    leftovers = sorted(p.name for p in waystone_home.iterdir())
    assert leftovers == ["config.toml", "config.toml.lock"]
