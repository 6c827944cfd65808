"""An "unpriced" means a request that used tokens with no known price: the ledger's ``priced``,
``prices check`` and the usage reports agree on it for real traffic.

A refused request (rate limit), a provider failure and a moderation use no tokens, so
nothing about them is unpriced; a chat on ``up/shared-model`` (no price configured)
used tokens, and is the one unpriced request.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from daemon.state import LEDGER
from tests.integration.conftest import Gateway
from waystone_cli.ledger import pricing_queries, reports

ONE_A_MINUTE = """
[rules.one-a-minute]
rate = { rpm = 1 }
action = "block"
[rulesets.slow-down]
when = 'user.id = "limited"'
rules = ["one-a-minute"]
"""


async def _post(gateway: Gateway, path: str, body: dict[str, Any]) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + path, json=body)
        await resp.read()
        return resp.status, resp.headers.get("x-waystone-cost-usd")


def _chat(model: str, user: str = "alice") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": {"waystone": json.dumps({"user": user})},
    }


async def test_only_a_request_with_tokens_and_no_price_counts_as_unpriced(
    start_gateway: Any,
) -> None:
    gateway: Gateway = await start_gateway(ONE_A_MINUTE)
    chat = "v1/chat/completions"
    statuses = [
        await _post(gateway, chat, _chat("gpt-test", user="limited")),
        await _post(gateway, chat, _chat("gpt-test", user="limited")),
        await _post(gateway, chat, _chat("error-model")),
        await _post(gateway, "v1/moderations", {"model": "mod-test", "input": "hi"}),
        await _post(gateway, chat, _chat("up/shared-model")),
    ]
    assert statuses == [
        (200, "0.0000210000"),  # 10 x $1 + 2 cached x $0.5 + 5 out x $2 per million
        (429, None),
        (500, None),
        (200, "0"),  # a moderation uses no tokens: nothing is unpriced
        (200, "unpriced"),
    ]
    rows = await gateway.rows("SELECT outcome, priced FROM requests ORDER BY ts")
    assert [(r["outcome"], r["priced"]) for r in rows] == [
        ("ok", True),
        ("rate_limited", True),
        ("upstream_error", True),
        ("ok", True),
        ("ok", False),
    ]

    def read(con: Any) -> tuple[Any, Any]:
        return reports.top(con, by="model")["total"], pricing_queries.unpriced_models(con)

    await gateway.app[LEDGER].flush()
    total, unpriced_models = await gateway.app[LEDGER].run_in_db(read)
    assert total["unpriced_requests"] == 1
    assert [(m["provider"], m["model"], m["requests"]) for m in unpriced_models] == [
        ("up", "shared-model", 1)
    ]
