"""The CLI's ledger queries give the same answers with the daemon up (through the
admin socket) or down (the file opened read-only)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import aiohttp

from tests.integration.conftest import Gateway
from waystone_cli.ledger.access import run_local, run_query


async def test_usage_top_is_the_same_through_the_socket_and_the_file(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for user, group in [("alice", "acme"), ("alice", "acme"), ("bob", None)]:
            ident = {"user": user, **({"group": group} if group else {})}
            async with http.post(
                gateway.url + "v1/chat/completions",
                json={
                    "model": "gpt-test",
                    "messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"waystone": json.dumps(ident)},
                },
            ) as resp:
                assert resp.status == 200
    home: Path = gateway.home
    socket_path = home / "admin.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    ledger = home / "ledger.duckdb"
    up = await asyncio.to_thread(
        run_query,
        "usage_top",
        ledger_path=ledger,
        socket_path=socket_path,
        by="user",
        metric="cost",
        since=None,
        until=None,
        limit=10,
        group=None,
    )
    await gateway.server.close()  # the daemon stops: the file is released, the socket removed
    assert not socket_path.exists()
    down = run_local(
        "usage_top", ledger, by="user", metric="cost", since=None, until=None, limit=10, group=None
    )
    assert up == down
    assert [
        (r["user"], r["requests"], r["input_tokens"], r["output_tokens"]) for r in up["rows"]
    ] == [("alice", 2, 24, 10), ("bob", 1, 12, 5)]
