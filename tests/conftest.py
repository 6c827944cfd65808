"""Fixtures shared by every test: an isolated WAYSTONE_HOME for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def waystone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own home: config, ledger and socket live under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WAYSTONE_HOME", str(home))
    monkeypatch.delenv("WAYSTONE_CONFIG", raising=False)
    yield home
