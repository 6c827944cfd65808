"""Counts too large for 64 bits: the client still gets its answer and the row is queued.

The usage plausibility rule (``core.usage_bounds``) caps such counts before anything
adds them up; these tests switch it off to show that the layer below it (counters,
metrics, spans, ``Call.finish``) holds on its own too.
"""

from __future__ import annotations

from typing import Any

import pytest

from daemon.state import COUNTERS, LEDGER
from tests.integration.conftest import Gateway
from waystone_cli.core.counters import Subject

INT64_MAX = 2**63 - 1

# A provider of its own, unpriced: the cost of these counts is not what is tested here.
HUGE = """
[providers.huge]
base_url = "{base_url}"
api_key = "env:FAKE_PROVIDER_KEY"
models = ["huge-usage-model"]
"""


def _usage(prompt_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": 0}


@pytest.fixture(autouse=True)
def _reported_counts_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    import daemon.request.forward
    from waystone_cli.core.usage_bounds import SettledUsage

    def as_given(reported: Any, **_: Any) -> SettledUsage:
        return SettledUsage(usage=reported, estimated=False, note=None)

    monkeypatch.setattr(daemon.request.forward, "settle_usage", as_given)


def _spy_on_submit(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The rows handed to the writer (a row of 2**63 tokens cannot be stored in BIGINT:
    what the writer does with it is its own concern, the row must reach it)."""
    submitted: list[Any] = []
    monkeypatch.setattr(gateway.app[LEDGER], "submit", submitted.append)
    return submitted


async def test_usage_of_2_63_tokens_is_answered_and_its_row_queued(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway: Gateway = await start_gateway(HUGE)
    gateway.provider.usage_by_model["huge-usage-model"] = _usage(2**63)
    submitted = _spy_on_submit(gateway, monkeypatch)
    client = gateway.client(default_headers={"X-Waystone-User": "alice"})
    reply = await client.chat.completions.create(
        model="huge-usage-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content == "Hello from fake"
    assert [(r.status, r.outcome, r.input_tokens) for r in submitted] == [(200, "ok", 2**63)]
    now = submitted[0].ts
    usage = gateway.app[COUNTERS].usage(Subject("user", "alice"), "input_tokens", "1h", now)
    assert usage == float(INT64_MAX)


async def test_a_users_tokens_passing_int64_within_a_minute_keep_every_row(
    start_gateway: Any,
) -> None:
    gateway: Gateway = await start_gateway(HUGE)
    gateway.provider.usage_by_model["huge-usage-model"] = _usage(2**62)
    client = gateway.client(default_headers={"X-Waystone-User": "alice"})
    for _ in range(3):
        reply = await client.chat.completions.create(
            model="huge-usage-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "Hello from fake"
    rows = await gateway.rows("SELECT status, outcome, input_tokens FROM requests")
    assert rows == [{"status": 200, "outcome": "ok", "input_tokens": 2**62}] * 3
