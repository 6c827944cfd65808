"""Every route through the real daemon app with the real openai SDK, ledger rows exact.

Costs are worked out by hand from the fake provider's fixed usage and the config's
prices (USD per million tokens): up/gpt-test input 1.0, cached input 0.5, output 2.0.
"""

from __future__ import annotations

import json
from decimal import Decimal

import aiohttp

from tests.integration.conftest import PROVIDER_KEY, Gateway

IDENTITY = json.dumps({"user": "alice", "group": "acme"})


def _identity(user: str = "alice", group: str | None = "acme") -> dict[str, str]:
    ident: dict[str, str] = {"user": user}
    if group:
        ident["group"] = group
    return {"waystone": json.dumps(ident)}


async def test_chat_records_exact_tokens_and_cost_and_strips_identity(gateway: Gateway) -> None:
    client = gateway.client()
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        metadata={**_identity(), "trace": "keep-me"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from fake"
    assert raw.headers["x-waystone-model"] == "up/gpt-test"
    assert raw.headers["x-waystone-cost-usd"] == "0.0000210000"
    assert raw.headers["x-waystone-request-id"].startswith("req_")
    assert float(raw.headers["x-waystone-overhead-ms"]) >= 0

    seen = gateway.provider.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["metadata"] == {"trace": "keep-me"}
    assert seen.body["model"] == "gpt-test"
    assert seen.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "client-key-not-for-upstream" not in json.dumps(seen.headers)

    [row] = await gateway.rows()
    assert {
        k: row[k]
        for k in (
            "user_id",
            "group_id",
            "provider",
            "model",
            "requested_model",
            "route",
            "stream",
            "status",
            "outcome",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cost_usd",
            "priced",
            "usage_estimated",
        )
    } == {
        "user_id": "alice",
        "group_id": "acme",
        "provider": "up",
        "model": "gpt-test",
        "requested_model": "up/gpt-test",
        "route": "chat/completions",
        "stream": False,
        "status": 200,
        "outcome": "ok",
        "input_tokens": 12,
        "output_tokens": 5,
        "cached_tokens": 2,
        "reasoning_tokens": 1,
        "cost_usd": Decimal("0.0000210000"),
        "priced": True,
        "usage_estimated": False,
    }


async def test_stream_hides_the_usage_chunk_the_client_did_not_ask_for(gateway: Gateway) -> None:
    client = gateway.client()
    stream = await client.chat.completions.create(
        model="up/gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        metadata=_identity(),
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert gateway.provider.seen[-1].body["stream_options"] == {"include_usage": True}
    [row] = await gateway.rows()
    assert (
        row["stream"],
        row["input_tokens"],
        row["output_tokens"],
        row["cost_usd"],
        row["usage_estimated"],
    ) == (True, 12, 5, Decimal("0.0000210000"), False)
    assert row["ttft_ms"] is not None


async def test_stream_keeps_the_usage_chunk_when_the_client_asked(gateway: Gateway) -> None:
    client = gateway.client()
    stream = await client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 12
    [row] = await gateway.rows()
    assert (row["user_id"], row["input_tokens"], row["output_tokens"]) == (None, 12, 5)


async def test_completions_streamed_and_not(gateway: Gateway) -> None:
    client = gateway.client()
    done = await client.completions.create(
        model="gpt-test", prompt="say", extra_body={"metadata": _identity("bob", None)}
    )
    assert done.choices[0].text == "fake completion"
    stream = await client.completions.create(model="gpt-test", prompt="say", stream=True)
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == "fake completion"
    rows = await gateway.rows()
    assert [
        (r["user_id"], r["stream"], r["input_tokens"], r["output_tokens"], r["cost_usd"])
        for r in rows
    ] == [
        ("bob", False, 6, 3, Decimal("0.0000120000")),
        (None, True, 6, 3, Decimal("0.0000120000")),
    ]


async def test_embeddings_priced_by_a_model_only_override(gateway: Gateway) -> None:
    client = gateway.client()
    result = await client.embeddings.create(
        model="embed-test", input="hello", extra_body={"metadata": _identity()}
    )
    assert result.data[0].embedding == [0.1, 0.2, 0.3]
    assert "metadata" not in gateway.provider.seen[-1].body
    [row] = await gateway.rows()
    assert (row["route"], row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (
        "embeddings",
        8,
        0,
        Decimal("0.0000008000"),
    )


async def test_responses_streamed_and_not_read_usage(gateway: Gateway) -> None:
    client = gateway.client()
    response = await client.responses.create(model="gpt-test", input="hi", metadata=_identity())
    assert response.output_text == "Hi there"
    stream = await client.responses.create(model="gpt-test", input="hi", stream=True)
    events = [event.type async for event in stream]
    assert events == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]
    rows = await gateway.rows()
    expected = (9, 4, 3, 2, Decimal("0.0000155000"))
    assert [
        (
            r["input_tokens"],
            r["output_tokens"],
            r["cached_tokens"],
            r["reasoning_tokens"],
            r["cost_usd"],
        )
        for r in rows
    ] == [expected, expected]
    assert [r["stream"] for r in rows] == [False, True]


async def test_moderations_and_models(gateway: Gateway) -> None:
    client = gateway.client()
    result = await client.moderations.create(model="mod-test", input="this is forbidden")
    assert result.results[0].flagged is True
    models = await client.models.list()
    ids = [m.id async for m in models]
    assert "up/gpt-test" in ids and "local/mock-small" in ids


async def test_transcriptions_pass_multipart_through_and_take_identity(gateway: Gateway) -> None:
    client = gateway.client()
    result = await client.audio.transcriptions.create(
        model="whisper-test",
        file=("a.wav", b"RIFF fake audio", "audio/wav"),
        extra_body={"metadata": json.dumps({"user": "carol"})},
    )
    assert result.text == "transcribed"
    seen = gateway.provider.seen[-1]
    assert seen.body == {"model": "whisper-test", "file": "<file a.wav>"}
    [row] = await gateway.rows()
    assert (row["route"], row["user_id"], row["status"]) == ("audio/transcriptions", "carol", 200)


async def test_routes_also_served_under_the_hosted_path(gateway: Gateway) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "api/gateway/v1/chat/completions",
            json={
                "model": "gpt-test",
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["choices"][0]["message"]["content"] == "Hello from fake"


async def test_mock_provider_answers_offline(gateway: Gateway) -> None:
    client = gateway.client()
    done = await client.chat.completions.create(
        model="mock-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content
    stream = await client.chat.completions.create(
        model="local/mock-large", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert [c async for c in stream]
    rows = await gateway.rows()
    assert [(r["provider"], r["model"], r["outcome"]) for r in rows] == [
        ("local", "mock-small", "ok"),
        ("local", "mock-large", "ok"),
    ]
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
