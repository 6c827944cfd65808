"""Rulesets enforced on real traffic (issue 4): every trigger and action through the real
daemon app and the openai SDK.

Costs are worked out by hand: a chat on up/gpt-test costs 21e-6 USD (12 prompt tokens,
2 of them cached at 0.5, 5 completion tokens at 2.0, per million).  A request's
reservation is its input estimate plus its token cap: with a 40-character prompt and
``max_tokens=5`` that is 16 input tokens (40/4 + 3 per message + 3 for the reply) and 5
output tokens, 26e-6 USD, at least its real cost as the overshoot bound requires.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.conftest import Gateway
from waystone_cli.ledger.access import run_local

PROMPT = "x" * 40
CHAT_COST = 21e-6


def _meta(user: str | None = None, group: str | None = None) -> dict[str, str]:
    ident = {k: v for k, v in (("user", user), ("group", group)) if v}
    return {"waystone": json.dumps(ident)}


async def _chat(
    gateway: Gateway,
    model: str = "gpt-test",
    user: str | None = None,
    group: str | None = None,
    **extra: Any,
) -> aiohttp.ClientResponse:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 5,
        "metadata": _meta(user, group),
        **extra,
    }
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + "v1/chat/completions", json=body)
        await resp.read()
        return resp


async def test_free_tier_downgrades_o3_and_leaves_others_alone(start_gateway: Any) -> None:
    gateway = await start_gateway("""
[users.alice]
metadata = { tier = "free" }
[rules.downgrade-o3]
model = "o3"
action = "change_model"
to = "up/o3-mini"
[rulesets.free-tier]
when = "user.tier = free"
rules = ["downgrade-o3"]
""")
    resp = await _chat(gateway, "o3", user="alice")
    assert resp.status == 200
    assert (resp.headers["x-waystone-model"], resp.headers["x-waystone-rulesets"]) == (
        "up/o3-mini",
        "free-tier",
    )
    assert gateway.provider.seen[-1].body["model"] == "o3-mini"
    resp = await _chat(gateway, "o3", user="bob")
    assert (resp.headers["x-waystone-model"], resp.headers["x-waystone-rulesets"]) == ("up/o3", "")
    rows = await gateway.rows()
    assert [(r["user_id"], r["requested_model"], r["model"], r["rulesets"]) for r in rows] == [
        ("alice", "up/o3", "o3-mini", ["free-tier"]),
        ("bob", "up/o3", "o3", []),
    ]


async def test_eu_groups_are_routed_and_the_same_user_without_the_group_is_not(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway("""
[providers.eu]
base_url = "{base_url}"
models = ["gpt-test-eu"]
[groups.acme]
metadata = { region = "eu" }
[rules.eu-route]
action = "change_model"
to = "eu/gpt-test-eu"
[rulesets.eu-orgs]
when = "group.region = eu"
rules = ["eu-route"]
""")
    resp = await _chat(gateway, user="alice", group="acme")
    assert resp.headers["x-waystone-model"] == "eu/gpt-test-eu"
    resp = await _chat(gateway, user="alice")
    assert resp.headers["x-waystone-model"] == "up/gpt-test"
    assert [s.body["model"] for s in gateway.provider.seen] == ["gpt-test-eu", "gpt-test"]


CAP = f"""
[rules.cap]
usage = {{ metric = "cost_usd", window = "month", over = {5.5 * CHAT_COST!r} }}
action = "block"
[rulesets.capped]
when = "always"
rules = ["cap"]
"""


async def test_a_monthly_cost_cap_holds_under_40_concurrent_requests_and_across_a_restart(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(CAP)
    client = gateway.client()

    async def one() -> int:
        try:
            await client.chat.completions.create(
                model="gpt-test",
                max_tokens=5,
                metadata=_meta("alice"),
                messages=[{"role": "user", "content": PROMPT}],
            )
            return 200
        except openai.RateLimitError as err:
            assert err.response.headers["Retry-After"].isdigit()
            assert 'ruleset "capped"' in err.message and 'rule "cap"' in err.message
            return 429

    statuses = await asyncio.gather(*(one() for _ in range(40)))
    assert statuses.count(200) <= 6
    assert statuses.count(200) + statuses.count(429) == 40
    # Sequentially, settled costs decide: 5 requests (105e-6) leave room, 6 (126e-6) do not.
    while await one() == 200:
        pass
    rows = await gateway.rows()
    assert len([r for r in rows if r["status"] == 200]) == 6
    spent = sum(float(r["cost_usd"]) for r in rows if r["status"] == 200)
    assert spent <= 5.5 * CHAT_COST + CHAT_COST  # overshoot at most one request's cost

    await gateway.server.close()
    again = await start_gateway(CAP)
    assert (await _chat(again, user="alice")).status == 429  # a restart resets nothing
    assert (await _chat(again, user="bob")).status == 200


# slow-model, priced like gpt-test, streams for 10 s: its reservation stays in flight.
SLOW_PRICED = CAP + '[prices."up/slow-model"]\ninput = 1.0\noutput = 2.0\n'


async def _in_flight(gateway: Gateway, **extra: Any) -> asyncio.Task[aiohttp.ClientResponse]:
    """A slow-model stream of alice's, once refused or reached the provider (so reserved)."""
    task = asyncio.create_task(_chat(gateway, "slow-model", user="alice", stream=True, **extra))
    for _ in range(200):
        if task.done() or any(s.body["model"] == "slow-model" for s in gateway.provider.seen):
            break
        await asyncio.sleep(0.01)
    return task


async def _admitted_of_33(gateway: Gateway) -> int:
    statuses = [
        r.status for r in await asyncio.gather(*(_chat(gateway, user="alice") for _ in range(33)))
    ]
    assert statuses.count(200) + statuses.count(429) == 33
    return statuses.count(200)


async def test_a_negative_max_tokens_in_flight_opens_no_hole_in_the_budget(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(SLOW_PRICED)
    in_flight = await _in_flight(gateway, max_tokens=-1_000_000_000)  # would reserve -$2000
    try:
        assert await _admitted_of_33(gateway) <= 6
        assert (await in_flight).status == 400
    finally:
        in_flight.cancel()
    rows = await gateway.rows(
        "SELECT model, status, outcome FROM requests WHERE model = 'slow-model'"
    )
    assert rows == [{"model": "slow-model", "status": 400, "outcome": "invalid_request"}]


async def test_a_request_for_8_choices_reserves_8_answers(start_gateway: Any) -> None:
    # In flight: 16 input tokens and 8 x 5 output tokens, 96e-6 USD of the 115.5e-6 budget,
    # so one more request (26e-6) is admitted; reserving one answer (26e-6) would admit 4.
    gateway = await start_gateway(SLOW_PRICED)
    in_flight = await _in_flight(gateway, max_tokens=5, n=8)
    try:
        assert await _admitted_of_33(gateway) == 1
    finally:
        in_flight.cancel()


async def test_a_member_may_use_at_most_10_percent_of_the_group_credits(start_gateway: Any) -> None:
    gateway = await start_gateway(f"""
[groups.acme]
credits = {{ usd = {20 * CHAT_COST!r}, window = "month" }}
[rules.member-share]
share = {{ of = "credits", max = 0.10 }}
action = "block"
[rulesets.shares]
when = "has group"
rules = ["member-share"]
""")
    statuses = [(await _chat(gateway, user="alice", group="acme")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await _chat(gateway, user="bob", group="acme")).status == 200
    assert (await _chat(gateway, user="alice")).status == 200  # alone, alice is not in the group


async def test_exhausted_group_credits_block_the_group_but_not_its_users_alone(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(f"""
[groups.globex]
credits = {{ usd = {2 * CHAT_COST!r}, window = "month" }}
""")
    statuses = [
        (await _chat(gateway, user=u, group="globex")).status for u in ("dave", "erin", "dave")
    ]
    assert statuses == [200, 200, 429]
    blocked = await _chat(gateway, user="erin", group="globex")
    body = json.loads(await blocked.text())
    assert (blocked.status, body["error"]["code"]) == (429, "quota_exceeded")
    assert "globex" in body["error"]["message"]
    assert (await _chat(gateway, user="dave")).status == 200


async def test_rpm_limit_answers_429_with_retry_after_and_ratelimit_headers(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway("""
[rules.two-a-minute]
rate = { rpm = 2 }
action = "block"
[rulesets.slow-down]
when = "always"
rules = ["two-a-minute"]
""")
    first = await _chat(gateway, user="alice")
    assert first.status == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert (await _chat(gateway, user="alice")).status == 200
    third = await _chat(gateway, user="alice")
    body = json.loads(await third.text())
    assert (third.status, body["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await _chat(gateway, user="bob")).status == 200
    rows = await gateway.rows()
    assert [r["outcome"] for r in rows] == ["ok", "ok", "rate_limited", "ok"]


FALLBACK = """
[rules.fb]
model = "up/error-model"
action = "fallback"
to = "up/gpt-test"
retries = 1
[rulesets.resilient]
when = "always"
rules = ["fb"]
"""


async def test_fallback_after_a_provider_500_retries_then_falls_back(start_gateway: Any) -> None:
    gateway = await start_gateway(FALLBACK)
    resp = await _chat(gateway, "error-model", user="alice")
    assert resp.status == 200
    assert resp.headers["x-waystone-model"] == "up/gpt-test"
    assert [s.body["model"] for s in gateway.provider.seen] == [
        "error-model",
        "error-model",
        "gpt-test",
    ]
    [row] = await gateway.rows()
    assert (row["requested_model"], row["model"], row["cost_usd"] is not None) == (
        "up/error-model",
        "gpt-test",
        True,
    )


async def test_streamed_fallback_happens_before_the_first_byte(start_gateway: Any) -> None:
    gateway = await start_gateway(FALLBACK)
    client = gateway.client()
    stream = await client.chat.completions.create(
        model="error-model", stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from fake"


async def test_token_cap_lowers_max_tokens_and_sets_one_when_missing(start_gateway: Any) -> None:
    gateway = await start_gateway("""
[rules.cap-50]
action = "limit_tokens"
max = 50
[rulesets.short]
when = "always"
rules = ["cap-50"]
""")
    await _chat(gateway, max_tokens=1000)
    await _chat(gateway, max_tokens=20)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "v1/chat/completions", json=body) as r,
    ):
        assert r.status == 200
    assert [s.body.get("max_tokens") for s in gateway.provider.seen] == [50, 20, 50]


CHECK = """
[rules.no-fake]
action = "check_output"
deny_regex = "(?i)from fake"
on_fail = "{on_fail}"
[rulesets.checked]
when = "always"
rules = ["no-fake"]
"""


async def test_regex_output_check_blocks_plain_and_streamed_answers(start_gateway: Any) -> None:
    gateway = await start_gateway(CHECK.replace("{on_fail}", "block"))
    resp = await _chat(gateway, user="alice")
    body = json.loads(await resp.text())
    assert (resp.status, body["error"]["code"]) == (403, "blocked")
    assert body["error"]["message"].startswith(
        'output blocked by ruleset "checked", rule "no-fake"'
    )
    client = gateway.client()
    with pytest.raises(openai.PermissionDeniedError):
        stream = await client.chat.completions.create(
            model="gpt-test", stream=True, messages=[{"role": "user", "content": "hi"}]
        )
        [c async for c in stream]
    rows = await gateway.rows()
    assert [(r["status"], r["outcome"], r["input_tokens"]) for r in rows] == [
        (403, "blocked", 12),
        (403, "blocked", 12),
    ]


async def test_regex_output_check_can_flag_instead(start_gateway: Any) -> None:
    gateway = await start_gateway(CHECK.replace("{on_fail}", "flag"))
    client = gateway.client()
    stream = await client.chat.completions.create(
        model="gpt-test", stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    assert (
        "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        == "Hello from fake"
    )
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (200, "flagged")


async def test_moderation_check_calls_the_moderation_route(start_gateway: Any) -> None:
    gateway = await start_gateway("""
[rules.moderated]
action = "check_output"
moderation = "up/mod-test"
[rulesets.safe]
when = "always"
rules = ["moderated"]
""")
    client = gateway.client()
    ok = await client.chat.completions.create(
        model="local/mock-small", messages=[{"role": "user", "content": "tell me a story"}]
    )
    assert ok.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.chat.completions.create(
            model="local/mock-small", messages=[{"role": "user", "content": "forbidden words"}]
        )
    assert "flagged by up/mod-test" in caught.value.message
    assert [s.path for s in gateway.provider.seen] == ["/v1/moderations", "/v1/moderations"]


async def test_users_who_joined_within_30_days_feed_the_review_dataset(start_gateway: Any) -> None:
    gateway = await start_gateway("""
[users.veteran]
added = 2020-01-01
[rules.review]
action = "dataset"
name = "newcomers"
[rulesets.newcomers]
when = "user.joined within 30d"
rules = ["review"]
""")
    await _chat(gateway, user="newbie", group="acme")
    await _chat(gateway, user="veteran")
    await _chat(gateway)
    rows = await gateway.rows()
    assert [(r["user_id"], r["datasets"]) for r in rows] == [
        ("newbie", ["newcomers"]),
        ("veteran", []),
        (None, []),
    ]
    await gateway.server.close()
    items = run_local("usage_dataset", gateway.home / "ledger.duckdb", dataset_name="newcomers")
    assert len(items) == 1
    item = items[0]
    assert (item["user"], item["group"], item["model"], item["output"]) == (
        "newbie",
        "acme",
        "up/gpt-test",
        "Hello from fake",
    )
    assert item["input"] == [{"role": "user", "content": PROMPT}]
