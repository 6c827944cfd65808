"""The daemon's heartbeat row: its name, and the requests it served in the last minute."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Gateway

SQL = "SELECT name, host, pid, url, requests_last_minute FROM instances"


async def test_the_instance_beats_its_name_and_requests_into_the_ledger(
    start_gateway: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYSTONE_INSTANCE", "eu-7")
    gw: Gateway = await start_gateway(heartbeat_interval_s=0.05)
    client = gw.client()
    for i in range(3):
        await client.chat.completions.create(
            model="mock-small", messages=[{"role": "user", "content": f"hi {i}"}]
        )
    await client.close()
    for _ in range(200):
        rows = await gw.rows(SQL)
        if rows and rows[0]["requests_last_minute"] == 3:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1
    row = rows[0]
    assert (row["name"], row["pid"], row["requests_last_minute"]) == ("eu-7", os.getpid(), 3)
    assert row["url"].startswith("http://127.0.0.1:") and row["url"].endswith("/v1")
