"""The daemon opens its ledger with the buffer pool ``[ledger] memory_limit_mb`` names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import duckdb
import pytest

import daemon.admin
from tests.integration.conftest import Gateway
from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.access import registry, run_query

# A query DuckDB cannot spill to disk: one aggregate of more than 16 MB.
TOO_BIG = "SELECT string_agg(md5(i::VARCHAR), ',') FROM range(1000000) t(i)"


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
    assert rows == [{"v": _shown("48MiB")}]
    assert _shown("48MiB") != _shown("32MiB")


async def test_a_report_beyond_the_limit_is_an_error_answer_and_the_daemon_goes_on(
    start_gateway: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_big(con: duckdb.DuckDBPyConnection) -> Any:
        return con.execute(TOO_BIG).fetchall()

    monkeypatch.setattr(daemon.admin, "registry", lambda: {**registry(), "too_big": too_big})
    gw: Gateway = await start_gateway("[ledger]\nmemory_limit_mb = 16")
    paths = {"ledger_path": gw.home / "ledger.duckdb", "socket_path": gw.home / "admin.sock"}
    with pytest.raises(WaystoneError, match="the ledger could not answer too_big: Out of Memory"):
        await asyncio.to_thread(run_query, "too_big", **paths)
    # The daemon goes on: the next query is answered.
    assert await asyncio.to_thread(run_query, "unpriced_models", **paths) == []
