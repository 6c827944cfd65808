"""Fixtures for CLI tests: run ``waystone`` in-process, write and read the config."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from waystone_cli.main import main

FROZEN = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)

# Rich decides on colour and width from these; tests want plain text, 100 columns.
TERMINAL_ENV: dict[str, str | None] = {
    "COLUMNS": "100",
    "LINES": "40",
    "FORCE_COLOR": None,
    "NO_COLOR": "1",
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
}


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str


Cli = Callable[..., Run]


@pytest.fixture
def cli() -> Cli:
    """``cli("user", "add", "alice")`` runs the real entry point (error translation
    included) with captured stdout and stderr."""
    runner = CliRunner()

    def invoke(*args: str) -> Run:
        with runner.isolation(env=TERMINAL_ENV) as (out, err, _):
            code = main(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            return Run(code, out.getvalue().decode(), err.getvalue().decode())

    return invoke


@pytest.fixture
def config_path(waystone_home: Path) -> Path:
    return waystone_home / "config.toml"


@pytest.fixture
def write_config(config_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        config_path.write_text(text, encoding="utf-8")
        return config_path

    return write


@pytest.fixture
def read_config(config_path: Path) -> Callable[[], dict[str, Any]]:
    def read() -> dict[str, Any]:
        return tomllib.loads(config_path.read_text(encoding="utf-8"))

    return read


@pytest.fixture(autouse=True)
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """``added`` and ``created`` stamps are FROZEN, so whole outputs can be asserted."""
    for module in ("sections.entities", "commands.keys"):
        monkeypatch.setattr(f"waystone_cli.{module}.timestamp", lambda: FROZEN)
    return FROZEN
