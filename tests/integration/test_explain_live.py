"""``rules explain`` against a running daemon reads its live rate windows over the admin
socket: requests in the last minute show as used (they were 0: the ledger keeps no
rate windows)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import Gateway
from waystone_cli.context import AppContext
from waystone_cli.explain import explain_request

FIVE_A_MINUTE = """
[rules.five-a-minute]
rate = { rpm = 5 }
action = "block"
[rulesets.everyone]
when = "always"
rules = ["five-a-minute"]
"""


async def test_explain_shows_the_live_requests_per_minute(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway: Gateway = await start_gateway(FIVE_A_MINUTE)
    monkeypatch.setattr(
        "waystone_cli.paths.default_socket_path", lambda: gateway.home / "admin.sock"
    )
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            body = {
                "model": "gpt-test",
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": {"waystone": json.dumps({"user": "alice"})},
            }
            async with http.post(gateway.url + "v1/chat/completions", json=body) as resp:
                assert resp.status == 200
    app = AppContext(config_path=Path(gateway.home / "config.toml"))
    report = await asyncio.to_thread(
        explain_request, app, user="alice", group=None, model="gpt-test", at=datetime.now(UTC)
    )
    rates = [(lim["metric"], lim["used"], lim["limit"]) for lim in report["limits"]]
    assert rates == [("rpm", 3, 5)]
