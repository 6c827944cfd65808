"""The daemon on a real Postgres ledger (SPEC §12): the reports give DuckDB's answers on
the same traffic, and a Postgres stopped under load loses no row and counts none twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest

from daemon.state import LEDGER
from tests.integration.conftest import Gateway
from tests.servers import PostgresServer
from waystone_cli.ledger import reports

pytestmark = pytest.mark.slow

MESSAGES: Any = [{"role": "user", "content": "hi"}]
# (user, group, model): priced and unpriced models, anonymous and grouped requests, and
# one model no provider serves (a refused request has a row too).
TRAFFIC = [
    ("alice", "acme", "gpt-test"),
    ("alice", None, "mock-small"),
    ("bob", "acme", "gpt-test"),
    ("bob", "acme", "mock-large"),
    (None, None, "gpt-test"),
    ("carol", "beta", "gpt-test"),
    ("carol", "beta", "no-such-model"),
    ("alice", "acme", "gpt-test"),
]


def _postgres(server: PostgresServer, extra: str = "") -> str:
    return f'[ledger]\nurl = "{server.url}"\n{extra}'


async def _send(gateway: Gateway, traffic: list[tuple[str | None, str | None, str]]) -> int:
    """Send the requests one after the other; returns how many were answered 200."""
    client = gateway.client()
    served = 0
    for user, group, model in traffic:
        headers = {"X-Waystone-User": user} if user else {}
        if group:
            headers["X-Waystone-Group"] = group
        try:
            await client.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers=headers
            )
        except openai.NotFoundError:
            continue
        served += 1
    return served


def _all_reports(con: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {
        f"top {by} {metric}": reports.top(con, by=by, metric=metric)
        for by in ("user", "group", "model", "provider")
        for metric in ("cost", "tokens", "requests")
    }
    answers["show alice"] = reports.show(con, "user", "alice")
    answers["show acme"] = reports.show(con, "group", "acme")
    answers["requests"] = reports.status(con)["requests"]
    return answers


async def _reports(gateway: Gateway) -> dict[str, Any]:
    writer = gateway.app[LEDGER]
    await writer.flush()
    return await writer.run_in_db(_all_reports)


async def test_reports_on_postgres_equal_those_on_duckdb_for_the_same_traffic(
    start_gateway: Callable[..., Any], postgres_server: PostgresServer
) -> None:
    on_duckdb = await start_gateway()
    assert await _send(on_duckdb, TRAFFIC) == 7
    expected = await _reports(on_duckdb)
    await on_duckdb.server.close()

    on_postgres = await start_gateway(_postgres(postgres_server))
    assert await _send(on_postgres, TRAFFIC) == 7
    got = await _reports(on_postgres)
    assert got == expected
    assert got["requests"] == len(TRAFFIC)
    assert got["top user cost"]["rows"][0]["user"] == "alice"


async def _ready(gateway: Gateway) -> tuple[int, bool]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "readyz") as resp:
        body = await resp.json()
    return resp.status, bool(body["checks"]["ledger"]["ok"])


async def test_postgres_stopped_under_load_loses_no_row_and_replays_each_once(
    start_gateway: Callable[..., Any], postgres_server: PostgresServer
) -> None:
    gateway = await start_gateway(_postgres(postgres_server, "flush_interval_ms = 50\n"))
    traffic = [(f"u{n % 4}", "acme" if n % 2 else None, "gpt-test") for n in range(40)]
    assert await _send(gateway, traffic) == 40

    await asyncio.to_thread(postgres_server.stop)
    # About ten seconds of requests while the server is down: every one is served.
    readiness = set()
    for _ in range(20):
        assert await _send(gateway, traffic[:4]) == 4
        readiness.add(await _ready(gateway))
        await asyncio.sleep(0.5)
    assert (503, False) in readiness  # the ledger said it could not write meanwhile
    await asyncio.to_thread(postgres_server.start)

    assert await _send(gateway, traffic) == 40
    writer = gateway.app[LEDGER]
    await asyncio.wait_for(writer.flush(), timeout=90)
    total = 40 + 20 * 4 + 40

    def counts(con: Any) -> tuple[Any, ...]:
        row = con.execute(
            "SELECT count(*), count(DISTINCT id), count(xid), "
            "(SELECT sum(requests) FROM usage_daily) FROM requests"
        ).fetchone()
        return tuple(int(v) for v in row)

    # Every row, replayed ones too, knows its transaction (for a resumable export).
    assert await writer.run_in_db(counts) == (total, total, total, total)
    top = await writer.run_in_db(lambda con: reports.top(con, by="user", metric="requests"))
    assert [(r["user"], r["requests"]) for r in top["rows"]] == [
        ("u0", 40),
        ("u1", 40),
        ("u2", 40),
        ("u3", 40),
    ]
    assert top["total"]["requests"] == total
    assert await _ready(gateway) == (200, True)


async def test_a_postgres_ledger_from_a_newer_waystone_stops_the_daemon_at_start(
    start_gateway: Callable[..., Any], postgres_server: PostgresServer
) -> None:
    from waystone_cli.core.errors import WaystoneError
    from waystone_cli.ledger.postgres import open_postgres

    con = open_postgres(postgres_server.url)
    con.execute("INSERT INTO _migrations VALUES ('m099_tenants', now()::TIMESTAMP)")
    con.close()
    with pytest.raises(WaystoneError) as err:
        await start_gateway(_postgres(postgres_server))
    assert str(err.value) == (
        f"the ledger {postgres_server.url} was written by a newer waystone (migrations this "
        "version does not know: m099_tenants); upgrade waystone to use it"
    )
