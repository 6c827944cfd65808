"""Fixtures shared by every test: an isolated WAYSTONE_HOME for each test, and a request
logger that only the daemon's own handler listens to."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.telemetry.logs import BufferedStderrHandler, TextFormatter
from tests.servers import (  # noqa: F401 (fixtures: real Redis and Postgres servers)
    postgres_cluster,
    postgres_server,
    redis_binary,
    redis_server,
)


@pytest.fixture(autouse=True)
def waystone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own home: config, ledger and socket live under it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WAYSTONE_HOME", str(home))
    monkeypatch.delenv("WAYSTONE_CONFIG", raising=False)
    yield home


@pytest.fixture
def daemon_logger() -> tuple[logging.Logger, BufferedStderrHandler, io.StringIO]:
    """A ``waystone.request`` logger whose only handler is a daemon handler writing to a
    StringIO, as in a running daemon (direct writes and batching are on).

    Built outside the logging module's hierarchy (``logging.Logger``, not ``getLogger``):
    pytest attaches its own capture handlers to the registered loggers while a test runs.
    """
    logger = logging.Logger("waystone.request", logging.INFO)
    handler = BufferedStderrHandler()
    handler.stream.close()
    out = io.StringIO()
    handler.setStream(out)
    handler.setFormatter(TextFormatter())
    logger.addHandler(handler)
    return logger, handler, out
