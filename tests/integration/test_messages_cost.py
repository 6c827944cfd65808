"""The cost of a Messages call by token class, through the gateway to the ledger and the
reports: the fake Anthropic provider (``fake_anthropic.py``) reports 10 uncached input
tokens, 20 cache reads, 30 cache writes (20 of them for an hour) and 7 output tokens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.integration.test_messages import IDENTITY, PROMPT, client, fake_anthropic, start
from waystone_cli.ledger import reports

__all__ = ["fake_anthropic", "start"]  # the fixtures, shared with test_messages

PRICES = """
[prices."anth/claude-deltas"]
input = 3.0
output = 15.0
cached_input = 0.3
cache_write = 3.75
cache_write_1h = 6.0
"""
# 10 x 3 + 20 x 0.3 + (30 - 20) x 3.75 + 20 x 6 + 7 x 15
# = 30 + 6 + 37.5 + 120 + 105 = 298.5 per million
COST = Decimal("0.0002985")


async def test_each_token_class_is_priced_at_its_rate_streamed_or_not(start: Any) -> None:
    gateway = await start(PRICES)
    async with client(gateway) as c:
        raw = await c.messages.with_raw_response.create(
            model="claude-deltas", max_tokens=100, messages=PROMPT, metadata=IDENTITY
        )
        stream = await c.messages.create(
            model="claude-deltas", max_tokens=100, messages=PROMPT, metadata=IDENTITY, stream=True
        )
        async for _ in stream:
            pass
    assert Decimal(raw.headers["x-waystone-cost-usd"]) == COST
    rows = await gateway.rows()
    assert [
        (r["stream"], r["input_tokens"], r["cached_tokens"], r["cache_write_tokens"],
         r["output_tokens"], r["cost_usd"])
        for r in rows
    ] == [(False, 60, 20, 30, 7, COST), (True, 60, 20, 30, 7, COST)]  # fmt: skip

    from daemon.state import LEDGER

    shown = await gateway.app[LEDGER].run_in_db(lambda con: reports.show(con, "user", "alice"))
    assert {k: shown[k] for k in ("input_tokens", "cached_tokens", "cache_write_tokens")} == {
        "input_tokens": 120,
        "cached_tokens": 40,
        "cache_write_tokens": 60,
    }
    assert shown["cost_usd"] == float(2 * COST)
