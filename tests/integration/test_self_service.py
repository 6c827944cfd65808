"""Self-service usage on real traffic: the budget headers and ``GET /v1/waystone/usage``.

Costs are worked out by hand (as in ``test_policy``): a chat on up/gpt-test costs 21e-6
USD; its reservation, with a 40-character prompt and ``max_tokens=5``, is 26e-6 USD.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.conftest import Gateway
from waystone_cli.core.windows import window_end

PROMPT = "x" * 40

CREDITS = """
[users.alice]
credits = { usd = 0.0001, window = "month" }
[groups.acme]
[rules.hourly]
usage = { metric = "cost_usd", window = "1h", over = 0.00005 }
action = "block"
[rules.daily-requests]
usage = { metric = "requests", window = "day", over = 1000 }
action = "block"
[rulesets.teams]
when = "has group"
rules = ["hourly", "daily-requests"]
"""


def _meta(user: str | None = None, group: str | None = None) -> dict[str, str]:
    ident = {k: v for k, v in (("user", user), ("group", group)) if v}
    return {"waystone": json.dumps(ident)}


async def _chat(client: openai.AsyncOpenAI, *, stream: bool = False, **ident: str) -> Any:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=5,
        metadata=_meta(**ident),
        stream=stream,
    )
    body = raw.parse()
    if stream:
        async for _ in body:
            pass
    return raw


def _budget(raw: Any) -> tuple[str | None, str | None]:
    return (
        raw.headers.get("x-waystone-budget-remaining-usd"),
        raw.headers.get("x-waystone-budget-reset"),
    )


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _first_ts(gateway: Gateway) -> datetime:
    rows = await gateway.rows()
    ts: datetime = rows[0]["ts"]
    return ts.replace(tzinfo=UTC)


async def test_credits_remaining_counts_each_requests_own_cost_or_its_reservation(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(CREDITS)
    client = gateway.client()
    first = await _chat(client, user="alice")
    month_end = _iso(window_end("month", await _first_ts(gateway)) or datetime.min)
    # 1e-4 - 21e-6 (this request's settled cost).
    assert _budget(first) == ("0.000079", month_end)
    second = await _chat(client, user="alice")
    assert _budget(second) == ("0.000058", month_end)  # 1e-4 - 2 x 21e-6
    # A stream's headers go out before its cost is known: its reservation counts.
    streamed = await _chat(client, stream=True, user="alice")
    assert _budget(streamed) == ("0.000032", month_end)  # 1e-4 - 42e-6 - 26e-6
    # bob has no USD limit: no budget headers.
    assert _budget(await _chat(client, user="bob")) == (None, None)


async def test_a_rolling_usage_rule_frees_when_its_oldest_charged_minute_leaves(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(CREDITS)
    client = gateway.client()
    first = await _chat(client, group="acme")
    ts = await _first_ts(gateway)
    frees = _iso(ts.replace(second=0, microsecond=0) + timedelta(minutes=61))
    # Nothing was charged before it: the hour frees when this request's minute leaves.
    assert _budget(first) == ("0.000029", frees)  # 5e-5 - 21e-6
    assert _budget(await _chat(client, group="acme")) == ("0.000008", frees)
    assert _budget(await _chat(client, group="acme")) == ("0", frees)  # overshot: 0, not < 0
    with pytest.raises(openai.RateLimitError) as refused:
        await _chat(client, group="acme")
    # The refusal says the same: nothing left, and when the hour frees some.
    assert _budget(refused.value.response) == ("0", frees)


async def _usage(
    gateway: Gateway, query: str, key: str | None = None, prefix: str = "v1"
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{gateway.url}{prefix}/waystone/usage?{query}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_usage_endpoint_lists_each_limit_left_and_when_it_frees(start_gateway: Any) -> None:
    gateway = await start_gateway(CREDITS)
    client = gateway.client()
    for _ in range(2):
        await _chat(client, user="alice", group="acme")
    ts = await _first_ts(gateway)
    status, body = await _usage(gateway, "user=alice&group=acme")
    assert status == 200
    hour_frees = _iso(ts.replace(second=0, microsecond=0) + timedelta(minutes=61))
    assert body == {
        "user": "alice",
        "group": "acme",
        "limits": [
            {
                "ruleset": None,
                "rule": "credits",
                "subject": "user:alice",
                "metric": "cost_usd",
                "window": "month",
                "used": 42e-6,
                "limit": 1e-4,
                "remaining": 58e-6,
                "action": "block",
                "resets_at": _iso(window_end("month", ts) or ts),
            },
            {
                "ruleset": "teams",
                "rule": "hourly",
                "subject": "group:acme",
                "metric": "cost_usd",
                "window": "1h",
                "used": 42e-6,
                "limit": 5e-5,
                "remaining": 8e-6,
                "action": "block",
                "resets_at": hour_frees,
            },
            {
                "ruleset": "teams",
                "rule": "daily-requests",
                "subject": "group:acme",
                "metric": "requests",
                "window": "day",
                "used": 2,
                "limit": 1000,
                "remaining": 998,
                "action": "block",
                "resets_at": _iso(window_end("day", ts) or ts),
            },
        ],  # fmt: skip
        # In the tightest USD limit's window: alice's usage inside acme this hour.
        "usage": {
            "window": "1h",
            "requests": 2,
            "input_tokens": 24,
            "output_tokens": 10,
            "cost_usd": 42e-6,
        },  # fmt: skip
    }
    # Under the hosted path too, and the same answer.
    hosted = await _usage(gateway, "user=alice&group=acme", prefix="api/gateway/v1")
    assert hosted == (200, body)


async def test_usage_endpoint_answers_a_user_it_never_saw_as_new(start_gateway: Any) -> None:
    gateway = await start_gateway(CREDITS)
    status, body = await _usage(gateway, "user=carol")
    assert (status, body) == (
        200,
        {
            "user": "carol",
            "group": None,
            "limits": [],
            "usage": {
                "window": "month",
                "requests": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": 0.0,
            },  # fmt: skip
        },
    )
    assert await gateway.rows("SELECT id FROM users WHERE id = 'carol'") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "name the user: ?user=ID[&group=ID]"),
        ("user=", "query.user: must not be empty"),
        ("user=a&model=x", "unknown parameter 'model' (user and group)"),
    ],
)
async def test_usage_endpoint_refuses_a_bad_query_in_the_openai_envelope(
    gateway: Gateway, query: str, message: str
) -> None:
    status, body = await _usage(gateway, query)
    assert (status, body["error"]["type"], body["error"]["message"]) == (
        400,
        "invalid_request_error",
        message,
    )


async def test_usage_endpoint_needs_the_gateway_key_when_keys_are_configured(
    start_gateway: Any,
) -> None:
    key = "sk-gateway-test"
    digest = hashlib.sha256(key.encode()).hexdigest()
    gateway = await start_gateway(f'[keys.app]\nhash = "sha256:{digest}"\n' + CREDITS)
    status, body = await _usage(gateway, "user=alice")
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")
    status, body = await _usage(gateway, "user=alice", key="sk-wrong")
    assert (status, body["error"]["code"]) == (401, "invalid_api_key")
    status, body = await _usage(gateway, "user=alice", key=key)
    assert (status, [lim["rule"] for lim in body["limits"]]) == (200, ["credits"])
