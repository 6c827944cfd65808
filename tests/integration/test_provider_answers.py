"""What providers send back: headers relayed on errors, answers bounded in time and size,
and usage taken only when it is plausible."""

from __future__ import annotations

import json
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


async def _stream(gateway: Gateway, model: str) -> tuple[int, bytes]:
    """A streamed chat request read raw, whatever the stream's end looks like."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": model, "messages": HI, "stream": True},
        ) as resp,
    ):
        return resp.status, await resp.content.read()


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
    status, received = await _stream(gateway, "stall-stream")
    assert status == 200
    assert b'"content": "Hello"' in received
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
    status, received = await _stream(gateway, "huge-stream")
    assert status == 200
    assert len(received) <= 1 << 20
    events = received.count(b"\n\n")
    assert events > 0
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["error"]) == (200, "upstream_cut", TOO_LARGE)
    assert row["usage_estimated"] is True
    assert row["output_tokens"] >= events * 250  # 1,000 characters an event, 4 a token


async def test_a_held_back_stream_past_max_response_mb_is_a_502(start_bad: Any) -> None:
    gateway = await start_bad(LIMITED + HOLD_BACK)
    status, received = await _stream(gateway, "huge-stream")
    assert (status, json.loads(received)["error"]["message"]) == (502, TOO_LARGE)
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


PRICED = '[prices."bad/usage"]\ninput = 1.0\noutput = 2.0\n[prices."bad/not-json"]\ninput = 1.0\noutput = 2.0\n'
# "zzzz": 3 tokens of reply framing, 3 of message framing, 1 of text.
ZZZZ_INPUT = 7
INPUT_BOUND = 4 * ZZZZ_INPUT + 32_768
# "Hello from a bad one": 20 characters, about 4 a token.
ANSWER_OUTPUT = 5


@pytest.mark.parametrize(
    ("usage", "max_tokens", "n", "expected", "note"),
    [
        (
            {"prompt_tokens": 10**12, "completion_tokens": 5},
            None,
            None,
            (INPUT_BOUND, 5),
            "input_tokens 1000000000000 > 32796",
        ),
        (
            {"prompt_tokens": 7, "completion_tokens": 2**63},
            10,
            2,
            (7, 20),
            "output_tokens 9223372036854775808 > 20",
        ),
        (
            {"input_tokens": 7, "output_tokens": 10**7},
            None,
            None,
            (7, 1_000_000),
            "output_tokens 10000000 > 1000000",
        ),
    ],
    ids=["prompt", "completion-over-cap", "completion-no-cap"],
)
async def test_implausible_usage_is_capped_flagged_and_charged_as_capped(
    start_bad: Any,
    bad: tuple[MisbehavingProvider, str],
    usage: dict[str, Any],
    max_tokens: int | None,
    n: int | None,
    expected: tuple[int, int],
    note: str,
) -> None:
    bad[0].usage_by_prompt["zzzz"] = usage
    gateway = await start_bad(PRICED)
    extra = {k: v for k, v in (("max_tokens", max_tokens), ("n", n)) if v is not None}
    messages = [{"role": "user", "content": "zzzz"}]
    await gateway.client().chat.completions.create(model="usage", messages=messages, **extra)
    [row] = await gateway.rows()
    assert (row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == (
        *expected,
        True,
    )
    assert row["error"] == (
        f"provider usage implausible ({note}): capped to what the request could use"
    )
    assert float(row["cost_usd"]) == pytest.approx((expected[0] * 1.0 + expected[1] * 2.0) / 1e6)
    assert (row["outcome"], row["priced"]) == ("ok", True)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {"prompt_tokens": -5, "completion_tokens": 3},
        {"prompt_tokens": "12", "completion_tokens": 3},
        {"prompt_tokens": True, "completion_tokens": 3},
        {"prompt_tokens": 12.5, "completion_tokens": 3},
        {"prompt_tokens": 12, "completion_tokens": [3]},
        {"total_tokens": 15},
        "lots",
    ],
    ids=["missing", "negative", "string", "bool", "float", "list", "no-counts", "not-a-dict"],
)
async def test_missing_or_junk_usage_is_estimated_and_charged(
    start_bad: Any, bad: tuple[MisbehavingProvider, str], usage: Any
) -> None:
    if usage is not None:
        bad[0].usage_by_prompt["zzzz"] = usage
    gateway = await start_bad(PRICED)
    messages = [{"role": "user", "content": "zzzz"}]
    await gateway.client().chat.completions.create(model="usage", messages=messages)
    [row] = await gateway.rows()
    assert (row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == (
        ZZZZ_INPUT,
        ANSWER_OUTPUT,
        True,
    )
    assert float(row["cost_usd"]) == pytest.approx((ZZZZ_INPUT * 1.0 + ANSWER_OUTPUT * 2.0) / 1e6)
    assert (row["outcome"], row["priced"], row["error"]) == ("ok", True, None)


async def test_a_200_that_is_not_json_is_estimated_from_its_body(start_bad: Any) -> None:
    gateway = await start_bad(PRICED)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "not-json", "messages": [{"role": "user", "content": "zzzz"}]},
        ) as resp,
    ):
        assert (resp.status, len(await resp.read())) == (200, 407)
    [row] = await gateway.rows()
    # 407 characters of body, about 4 a token
    assert (row["input_tokens"], row["output_tokens"], row["usage_estimated"]) == (7, 102, True)
    assert float(row["cost_usd"]) == pytest.approx((7 * 1.0 + 102 * 2.0) / 1e6)
