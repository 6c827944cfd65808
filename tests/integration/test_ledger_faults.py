"""The daemon with rows its ledger cannot store: the others arrive, readiness and the
metrics say what was set aside, and where."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest

from tests.integration.conftest import Gateway
from tests.unit.ledger.conftest import record
from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger import spill
from waystone_cli.ledger import writer as writer_module
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.rows import MAX_COST

MESSAGES = [{"role": "user", "content": "hi"}]


async def _readyz(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "readyz") as resp:
        return resp.status, await resp.json()


async def _metric(gateway: Gateway, name: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "metrics") as resp:
        text = await resp.text()
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_absurd_usage_is_set_aside_and_other_users_rows_arrive(
    gateway: Gateway,
) -> None:
    client = gateway.client()
    await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers={"X-Waystone-User": "alice"}
    )
    # A count whose cost (1 USD per million input tokens) is beyond DECIMAL(18, 10).
    gateway.provider.chat_usage = {"prompt_tokens": 2 * 10**14, "completion_tokens": 1}
    await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers={"X-Waystone-User": "mallory"}
    )
    gateway.provider.chat_usage = None
    await client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers={"X-Waystone-User": "bob"}
    )
    rows = await gateway.rows("SELECT user_id, cost_usd FROM requests ORDER BY ts")
    writer_path = gateway.home / "ledger.duckdb.spill.jsonl.rejected"
    lines = writer_path.read_text().splitlines() if writer_path.exists() else []
    set_aside = [json.loads(line) for line in lines]
    stored = [r["user_id"] for r in rows]
    assert [u for u in stored if u != "mallory"] == ["alice", "bob"]
    # However usage plausibility treats it, the row is in exactly one place, and the
    # ledger never holds a cost its column cannot.
    assert stored.count("mallory") + len(set_aside) == 1
    assert all(r["cost_usd"] is None or r["cost_usd"] < MAX_COST for r in rows)
    status, body = await _readyz(gateway)
    assert (status, body["ready"]) == (200, True)
    assert body["checks"]["ledger"]["rejected_path"] == str(writer_path)
    assert body["checks"]["ledger"]["rows_rejected"] == len(set_aside)
    assert await _metric(gateway, "waystone_ledger_rows_rejected_total") == [
        f"waystone_ledger_rows_rejected_total {float(len(set_aside))}"
    ]


async def test_a_spill_line_that_does_not_convert_is_counted_at_start(
    start_gateway: Callable[..., Any], waystone_home: Path
) -> None:
    spill_path = waystone_home / "ledger.duckdb.spill.jsonl"
    junk = json.loads(spill.encode(record(2)))
    junk["output_tokens"] = 2**64
    spill_path.write_text(spill.encode(record(1)) + "\n" + json.dumps(junk) + "\n")
    gateway: Gateway = await start_gateway()
    assert [r["id"] for r in await gateway.rows("SELECT id FROM requests")] == ["req-000001"]
    status, body = await _readyz(gateway)
    assert (status, body["checks"]["ledger"]["rows_rejected"]) == (200, 1)
    assert await _metric(gateway, "waystone_ledger_rows_rejected_total") == [
        "waystone_ledger_rows_rejected_total 1.0"
    ]


async def test_a_ledger_from_a_newer_waystone_stops_the_daemon_at_start(
    start_gateway: Callable[..., Any], waystone_home: Path
) -> None:
    ledger = waystone_home / "ledger.duckdb"
    con = open_readwrite(ledger)
    con.execute("INSERT INTO _migrations VALUES ('m099_tenants', now()::TIMESTAMP)")
    con.close()
    with pytest.raises(WaystoneError) as err:
        await start_gateway()
    assert str(err.value) == (
        f"the ledger {ledger} was written by a newer waystone (migrations this version "
        "does not know: m099_tenants); upgrade waystone to use it"
    )
    # Refused, not left open: the file can be opened again at once.
    duckdb.connect(str(ledger)).close()


async def test_readyz_recovers_once_the_ledger_takes_rows_again(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = {"on": True}
    real = writer_module.insert_batch

    def unwritable_during_outage(*args: Any) -> None:
        if outage["on"]:
            raise duckdb.IOException("Permission denied")
        real(*args)

    monkeypatch.setattr(writer_module, "insert_batch", unwritable_during_outage)
    client = gateway.client()
    await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert await _readyz_until(gateway, 503)
    outage["on"] = False
    assert await _readyz_until(gateway, 200)  # within the writer's back-off, no restart
    assert len(await gateway.rows()) == 1


async def _readyz_until(gateway: Gateway, status: int) -> bool:
    for _ in range(100):
        if (await _readyz(gateway))[0] == status:
            return True
        await asyncio.sleep(0.1)
    return False
