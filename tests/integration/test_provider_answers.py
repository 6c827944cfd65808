"""What providers send back: headers relayed on errors, answers bounded in time and size,
and usage taken only when it is plausible."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.conftest import Gateway
from tests.integration.misbehaving_provider import (
    LONG_CHUNKS,
    MODELS,
    TRICKLE_S,
    MisbehavingProvider,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def bad(aiohttp_server: Any) -> tuple[MisbehavingProvider, str]:
    provider = MisbehavingProvider()
    server = await aiohttp_server(provider.app())
    return provider, str(server.make_url("/v1"))


@pytest.fixture
async def start_bad(start_gateway: Any, bad: tuple[MisbehavingProvider, str]) -> Any:
    async def start(extra: str = "") -> Gateway:
        models = ", ".join(f'"{m}"' for m in MODELS)
        gateway: Gateway = await start_gateway(f"""
[providers.bad]
base_url = "{bad[1]}"
models = [{models}]
timeout_s = 1
idle_timeout_s = {TRICKLE_S * 3}
{extra}
""")
        return gateway

    return start


@pytest.mark.parametrize(
    ("model", "error"),
    [("ratelimited", openai.RateLimitError), ("overloaded", openai.InternalServerError)],
)
async def test_a_provider_refusal_keeps_its_retry_after(
    start_bad: Any, model: str, error: type[openai.APIStatusError]
) -> None:
    gateway = await start_bad()
    with pytest.raises(error) as caught:
        await gateway.client().chat.completions.create(model=model, messages=HI)
    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("7", "7000")
    assert caught.value.body == {
        "message": "slow down",
        "type": "rate_limit",
        "param": None,
        "code": None,
    }
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (caught.value.status_code, "upstream_error")


@pytest.mark.parametrize("model", ["trickle", "late-head"])
async def test_timeout_s_bounds_the_whole_answer(start_bad: Any, model: str) -> None:
    gateway = await start_bad()
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client().chat.completions.create(model=model, messages=HI)
    elapsed = time.monotonic() - started
    assert (caught.value.status_code, caught.value.code) == (504, "upstream_timeout")
    assert 0.9 < elapsed < 2.5  # timeout_s = 1, though the trickle never pauses long
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (504, "upstream_timeout")


async def test_a_stream_longer_than_timeout_s_is_served_whole(start_bad: Any) -> None:
    gateway = await start_bad()
    stream = await gateway.client().chat.completions.create(
        model="long-stream", messages=HI, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "tick " * LONG_CHUNKS  # 2 s of chunks, timeout_s = 1
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["output_tokens"]) == (200, "ok", LONG_CHUNKS)


async def test_a_stream_idle_past_idle_timeout_s_is_cut(start_bad: Any) -> None:
    gateway = await start_bad()
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "stall-stream", "messages": HI, "stream": True},
        ) as resp,
    ):
        assert resp.status == 200
        received = (await resp.content.read()).decode()
    assert '"content": "Hello"' in received
    assert time.monotonic() - started < 2.5  # the provider stalls for 30 s
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["usage_estimated"]) == (200, "upstream_cut", True)
    assert row["error"] == 'provider "bad" timed out'
    assert row["output_tokens"] == 2  # "Hello": 5 characters, about 4 a token


LIMITED = "[server]\nmax_response_mb = 1\n"
TOO_LARGE = 'provider "bad" sent an answer larger than 1 MiB ([server] max_response_mb)'


@pytest.mark.parametrize("model", ["huge-json", "gzip-bomb"])
async def test_an_answer_past_max_response_mb_is_a_502_that_says_so(
    start_bad: Any, model: str
) -> None:
    gateway = await start_bad(LIMITED)
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client().chat.completions.create(model=model, messages=HI)
    assert caught.value.status_code == 502
    assert caught.value.body == {
        "message": TOO_LARGE,
        "type": "upstream_error",
        "param": None,
        "code": "upstream_error",
    }
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["error"]) == (502, "upstream_error", TOO_LARGE)


async def test_a_stream_past_max_response_mb_is_cut_and_its_usage_estimated(
    start_bad: Any,
) -> None:
    gateway = await start_bad(LIMITED)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "huge-stream", "messages": HI, "stream": True},
        ) as resp,
    ):
        assert resp.status == 200
        received = await resp.content.read()
    assert len(received) <= 1 << 20
    events = received.count(b"\n\n")
    assert events > 0
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["error"]) == (200, "upstream_cut", TOO_LARGE)
    assert row["usage_estimated"] is True
    assert row["output_tokens"] >= events * 250  # 1,000 characters an event, 4 a token


async def test_a_held_back_stream_past_max_response_mb_is_a_502(start_bad: Any) -> None:
    gateway = await start_bad(LIMITED + HOLD_BACK)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "huge-stream", "messages": HI, "stream": True},
        ) as resp,
    ):
        assert resp.status == 502
        assert (await resp.json())["error"]["message"] == TOO_LARGE
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["usage_estimated"]) == (
        502,
        "upstream_error",
        True,
    )


HOLD_BACK = """
[rules.no-secrets]
action = "check_output"
deny_regex = "sk-[a-z0-9]{20}"
on_fail = "block"
[rulesets.checked]
when = "always"
rules = ["no-secrets"]
"""
