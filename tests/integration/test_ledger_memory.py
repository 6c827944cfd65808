"""The daemon opens its ledger with the buffer pool ``[ledger] memory_limit_mb`` names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from tests.integration.conftest import Gateway


def _shown(limit: str) -> str:
    """How DuckDB shows a memory limit once set (it rounds and reformats sizes)."""
    other = duckdb.connect()
    other.execute(f"SET memory_limit = '{limit}'")
    row = other.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


async def test_the_configured_limit_is_on_the_writers_connection(
    start_gateway: Callable[..., Any],
) -> None:
    gw: Gateway = await start_gateway("[ledger]\nmemory_limit_mb = 48")
    rows = await gw.rows("SELECT current_setting('memory_limit') AS v")
    assert rows == [{"v": _shown("48MB")}]
    assert _shown("48MB") != _shown("32MB")
