"""Anthropic's Messages API through the gateway, with the real ``anthropic`` SDK as client,
against the fake Anthropic provider (``fake_anthropic.py``) on loopback.

The fake's usage is 10 uncached input tokens, 20 cache reads, 30 cache writes (20 of them
for an hour) and 7 output tokens: in the ledger, 60 input tokens (all input), 20 cached,
30 cache writes and 7 output tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from tests.integration.conftest import Gateway
from tests.integration.fake_anthropic import ANTHROPIC_KEY, FakeAnthropic
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.access import run_local

MODELS = ["claude-test", "claude-deltas", "claude-cut", "claude-error", "claude-overloaded"]
ANTHROPIC = f"""
[providers.anth]
kind = "anthropic"
base_url = "{{anth_url}}"
api_key = "env:FAKE_ANTHROPIC_KEY"
models = {json.dumps(MODELS)}
timeout_s = 5

[prices."anth/claude-test"]
input = 3.0
output = 15.0
cached_input = 0.3
"""
PROMPT = [{"role": "user", "content": "Say hello"}]
IDENTITY = {"waystone": {"user": "alice", "group": "acme"}}


@pytest.fixture
async def fake_anthropic(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", ANTHROPIC_KEY)
    fake = FakeAnthropic()
    server: TestServer = await aiohttp_server(fake.app())
    return fake, server


@pytest.fixture
def start(start_gateway: Any, fake_anthropic: Any) -> Callable[..., Any]:
    """Start the gateway with the anthropic provider (and ``extra`` config); its records
    are kept on ``gateway.records`` as they are submitted to the ledger."""
    _, server = fake_anthropic
    url = str(server.make_url("/")).rstrip("/")

    async def go(extra: str = "") -> Gateway:
        gateway: Gateway = await start_gateway((ANTHROPIC + extra).replace("{anth_url}", url))
        from daemon.state import LEDGER

        writer = gateway.app[LEDGER]
        submit = writer.submit
        records: list[RequestRecord] = []

        def keep(record: RequestRecord) -> None:
            records.append(record)
            submit(record)

        writer.submit = keep  # type: ignore[method-assign]
        gateway.records = records  # type: ignore[attr-defined]
        return gateway

    return go


def client(gateway: Gateway, **kwargs: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=gateway.url.rstrip("/"),
        api_key=kwargs.pop("api_key", "client-key-not-for-upstream"),
        max_retries=0,
        **kwargs,
    )


def tokens(row: dict[str, Any]) -> tuple[int, int, int]:
    return row["input_tokens"], row["cached_tokens"], row["output_tokens"]


async def test_sync_create_records_each_token_class_and_forwards_only_the_provider_key(
    start: Any, fake_anthropic: Any
) -> None:
    gateway = await start()
    sync = anthropic.Anthropic(
        base_url=gateway.url.rstrip("/"), api_key="client-key-not-for-upstream", max_retries=0
    )
    answer = await asyncio.to_thread(
        sync.messages.create,
        model="anth/claude-test",
        max_tokens=100,
        messages=PROMPT,
        metadata={**IDENTITY, "user_id": "end-user-7"},  # type: ignore[dict-item]
        extra_headers={"anthropic-version": "2023-01-01"},
    )
    assert answer.content[0].text == "Hello from Claude"  # type: ignore[union-attr]
    assert answer.usage.cache_read_input_tokens == 20
    rows = await gateway.rows()
    assert [(r["route"], r["user_id"], r["group_id"], r["status"]) for r in rows] == [
        ("messages", "alice", "acme", 200)
    ]
    assert tokens(rows[0]) == (60, 20, 7)
    assert rows[0]["cost_usd"] is not None and rows[0]["cost_usd"] > 0
    assert [r.cache_write_tokens for r in gateway.records] == [30]  # type: ignore[attr-defined]
    fake, _ = fake_anthropic
    [seen] = fake.seen
    assert seen.body["metadata"] == {"user_id": "end-user-7"}
    assert seen.body["model"] == "claude-test"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY
    assert "Authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-01-01"  # the client's


async def test_metadata_user_id_names_the_user_when_nothing_else_does(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        await c.messages.create(
            model="claude-test", max_tokens=50, messages=PROMPT, metadata={"user_id": "u-42"}
        )
        await c.messages.create(
            model="claude-test",
            max_tokens=50,
            messages=PROMPT,
            metadata={"user_id": "u-42"},
            extra_headers={"X-Waystone-User": "bob"},
        )
    rows = await gateway.rows()
    assert [r["user_id"] for r in rows] == ["u-42", "bob"]


async def test_a_raw_request_gets_the_default_version_and_its_beta_passed_through(
    start: Any, fake_anthropic: Any
) -> None:
    gateway = await start()
    body = {"model": "claude-test", "max_tokens": 20, "messages": PROMPT}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "v1/messages",
            json=body,
            headers={"anthropic-beta": "prompt-caching-2024-07-31", "x-api-key": "mine"},
        ) as resp,
    ):
        assert resp.status == 200
    fake, _ = fake_anthropic
    [seen] = fake.seen
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen.headers["x-api-key"] == ANTHROPIC_KEY


async def test_async_stream_takes_input_from_message_start_and_output_from_message_delta(
    start: Any,
) -> None:
    gateway = await start()
    async with (
        client(gateway) as c,
        c.messages.stream(
            model="claude-test", max_tokens=100, messages=PROMPT, metadata=IDENTITY
        ) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "Hello from Claude"
    assert final.usage.output_tokens == 7
    rows = await gateway.rows()
    assert [(r["stream"], r["status"], r["usage_estimated"]) for r in rows] == [(True, 200, False)]
    assert tokens(rows[0]) == (60, 20, 7)
    assert [r.cache_write_tokens for r in gateway.records] == [30]  # type: ignore[attr-defined]


async def test_cumulative_message_deltas_are_not_added_up(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        stream = await c.messages.create(
            model="claude-deltas", max_tokens=100, messages=PROMPT, stream=True
        )
        kinds = [event.type async for event in stream]
    assert kinds.count("message_delta") == 3
    rows = await gateway.rows()
    assert tokens(rows[0]) == (60, 20, 7)  # the last delta's 7, not 3 + 5 + 7


async def test_a_stream_read_with_an_output_check_is_tallied_the_same(start: Any) -> None:
    gateway = await start("""
[rules.no-secrets]
action = "check_output"
deny_regex = "s3cr3t"
on_fail = "flag"
[rulesets.checked]
when = "always"
rules = ["no-secrets"]
""")
    async with client(gateway) as c:
        stream = await c.messages.create(
            model="claude-deltas", max_tokens=100, messages=PROMPT, stream=True
        )
        _ = [event async for event in stream]
    rows = await gateway.rows()
    assert (tokens(rows[0]), rows[0]["outcome"]) == ((60, 20, 7), "ok")


async def test_a_cut_stream_is_estimated_and_marked(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        stream = await c.messages.create(
            model="claude-cut", max_tokens=100, messages=PROMPT, stream=True
        )
        kinds: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as cut:
            async for event in stream:
                kinds.append(event.type)
    assert kinds[-1] == "content_block_delta"  # no message_delta, no message_stop
    assert cut.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "cut the response" in cut.value.body["error"]["message"]  # type: ignore[index]
    rows = await gateway.rows()
    row = rows[0]
    assert (row["outcome"], row["usage_estimated"]) == ("upstream_cut", True)
    # The input message_start reported; ceil(len("Hello from") / 4) estimated output tokens.
    assert (row["input_tokens"], row["cached_tokens"], row["output_tokens"]) == (60, 20, 3)


async def test_count_tokens_is_forwarded_answered_and_recorded_without_tokens(
    start: Any, fake_anthropic: Any
) -> None:
    gateway = await start()
    async with client(gateway) as c:
        counted = await c.messages.count_tokens(
            model="claude-test", messages=PROMPT, extra_body={"metadata": IDENTITY}
        )
    assert counted.input_tokens == 42
    fake, _ = fake_anthropic
    assert [(s.path, s.body.get("metadata")) for s in fake.seen] == [
        ("/v1/messages/count_tokens", None)
    ]
    rows = await gateway.rows()
    assert [(r["route"], r["user_id"], r["status"]) for r in rows] == [
        ("messages/count_tokens", "alice", 200)
    ]
    assert tokens(rows[0]) == (0, 0, 0)


async def test_the_api_root_under_api_gateway_v1_serves_messages_too(start: Any) -> None:
    gateway = await start()
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url + "api/gateway", api_key="k", max_retries=0
    ) as c:
        answer = await c.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    assert answer.usage.output_tokens == 7


async def test_a_provider_500_falls_back_to_the_next_anthropic_model(
    start: Any, fake_anthropic: Any
) -> None:
    gateway = await start("""
[rules.backup]
model = "anth/claude-error"
action = "fallback"
to = "anth/claude-test"
[rulesets.resilient]
when = "always"
rules = ["backup"]
""")
    async with client(gateway) as c:
        answer = await c.messages.create(model="claude-error", max_tokens=10, messages=PROMPT)
    assert answer.model == "claude-test"
    fake, _ = fake_anthropic
    assert [s.body["model"] for s in fake.seen] == ["claude-error", "claude-test"]
    rows = await gateway.rows()
    assert [(r["model"], r["status"]) for r in rows] == [("claude-test", 200)]


async def test_provider_errors_pass_through_as_they_came(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        with pytest.raises(anthropic.InternalServerError) as failed:
            await c.messages.create(model="claude-error", max_tokens=10, messages=PROMPT)
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            await c.messages.create(model="claude-overloaded", max_tokens=10, messages=PROMPT)
    assert failed.value.status_code == 500
    assert failed.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error"},
    }
    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value, anthropic.OverloadedError)
    rows = await gateway.rows()
    assert [(r["status"], r["outcome"]) for r in rows] == [
        (500, "upstream_error"),
        (529, "upstream_error"),
    ]


async def test_a_budget_refusal_is_a_rate_limit_error_with_retry_after(start: Any) -> None:
    gateway = await start("""
[rules.one-a-minute]
rate = { rpm = 1 }
action = "block"
[rulesets.slow-down]
when = "always"
rules = ["one-a-minute"]
""")
    async with client(gateway) as c:
        await c.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
        with pytest.raises(anthropic.RateLimitError) as refused:
            await c.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    assert refused.value.status_code == 429
    assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(refused.value.response.headers["Retry-After"]) <= 60
    rows = await gateway.rows()
    assert [r["outcome"] for r in rows] == ["ok", "rate_limited"]


async def test_exhausted_credits_refuse_messages_as_chat_is_refused(start: Any) -> None:
    gateway = await start("""
[users.alice]
credits = { usd = 0.0001, window = "month" }
""")
    async with client(gateway) as c:
        await c.messages.create(
            model="claude-test", max_tokens=10, messages=PROMPT, metadata=IDENTITY
        )
        with pytest.raises(anthropic.RateLimitError) as refused:
            await c.messages.create(
                model="claude-test", max_tokens=10, messages=PROMPT, metadata=IDENTITY
            )
    assert "alice" in refused.value.body["error"]["message"]  # type: ignore[index]


async def test_limit_tokens_caps_max_tokens(start: Any, fake_anthropic: Any) -> None:
    gateway = await start("""
[rules.short]
action = "limit_tokens"
max = 64
[rulesets.everyone]
when = "always"
rules = ["short"]
""")
    async with client(gateway) as c:
        await c.messages.create(model="claude-test", max_tokens=1000, messages=PROMPT)
        await c.messages.count_tokens(model="claude-test", messages=PROMPT)
    fake, _ = fake_anthropic
    assert [s.body.get("max_tokens") for s in fake.seen] == [64, None]


async def test_a_blocking_output_check_holds_the_stream_back_and_refuses_it(start: Any) -> None:
    gateway = await start("""
[rules.no-claude]
action = "check_output"
deny_regex = "Claude"
[rulesets.checked]
when = "always"
rules = ["no-claude"]
""")
    async with client(gateway) as c:
        with pytest.raises(anthropic.PermissionDeniedError) as streamed:
            await c.messages.create(
                model="claude-test", max_tokens=10, messages=PROMPT, stream=True
            )
        with pytest.raises(anthropic.PermissionDeniedError):
            await c.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    message = streamed.value.body["error"]["message"]  # type: ignore[index]
    assert 'ruleset "checked", rule "no-claude"' in message


async def test_a_dataset_stores_the_messages_and_the_text_answer(start: Any) -> None:
    gateway = await start("""
[rules.review]
action = "dataset"
name = "claude-review"
[rulesets.all]
when = "always"
rules = ["review"]
""")
    async with client(gateway) as c:
        await c.messages.create(
            model="claude-test",
            max_tokens=10,
            system="Be brief",
            messages=PROMPT,
            metadata=IDENTITY,
        )
    await gateway.server.close()
    items = run_local("usage_dataset", gateway.home / "ledger.duckdb", dataset_name="claude-review")
    assert [(i["user"], i["model"], i["output"]) for i in items] == [
        ("alice", "anth/claude-test", "Hello from Claude")
    ]
    assert items[0]["input"] == {"system": "Be brief", "messages": PROMPT}


# --- errors the gateway raises, in Anthropic's envelope --------------------------------


def envelope_of(err: anthropic.APIStatusError) -> tuple[int, str]:
    body = err.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}
    return err.status_code, body["error"]["type"]


async def test_the_gateway_key_is_accepted_as_x_api_key_or_bearer(start: Any) -> None:
    digest = hashlib.sha256(b"gw-secret").hexdigest()
    gateway = await start(f'[keys.app]\nhash = "sha256:{digest}"\n')
    async with client(gateway, api_key="gw-secret") as by_x_api_key:
        await by_x_api_key.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url.rstrip("/"), auth_token="gw-secret", max_retries=0
    ) as by_bearer:
        await by_bearer.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    async with client(gateway, api_key="wrong") as wrong:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    assert envelope_of(refused.value) == (401, "authentication_error")


async def test_every_refusal_of_the_gateway_is_in_anthropics_envelope(start: Any) -> None:
    gateway = await start("""
[rules.no-large]
model = "claude-overloaded"
action = "block"
message = "not this one"
[rulesets.policy]
when = "always"
rules = ["no-large"]
[providers.gone]
kind = "anthropic"
base_url = "http://127.0.0.1:9"
models = ["claude-gone"]
[providers.impatient]
kind = "anthropic"
base_url = "{anth_url}"
api_key = "env:FAKE_ANTHROPIC_KEY"
models = ["claude-slow"]
timeout_s = 0.2
""")
    async with client(gateway) as c:
        cases: list[tuple[type[anthropic.APIStatusError], dict[str, Any]]] = [
            (anthropic.BadRequestError, {"model": "up/gpt-test"}),
            (anthropic.BadRequestError, {"model": "claude-test", "max_tokens": -1}),
            (anthropic.BadRequestError, {"metadata": {"waystone": 7}}),
            (anthropic.NotFoundError, {"model": "claude-unknown"}),
            (anthropic.PermissionDeniedError, {"model": "claude-overloaded"}),
            (anthropic.InternalServerError, {"model": "claude-gone"}),
            (anthropic.InternalServerError, {"model": "claude-slow"}),
        ]
        seen = []
        for expected, fields in cases:
            body = {"model": "claude-test", "max_tokens": 10, "messages": PROMPT, **fields}
            with pytest.raises(expected) as refused:
                await c.post("/v1/messages", body=body, cast_to=object)
            seen.append(envelope_of(refused.value))
    assert seen == [
        (400, "invalid_request_error"),
        (400, "invalid_request_error"),
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (403, "permission_error"),
        (502, "api_error"),
        (504, "api_error"),
    ]
    rows = await gateway.rows()
    assert [r["status"] for r in rows] == [400, 400, 400, 404, 403, 502, 504]


async def test_an_openai_kind_model_on_messages_is_a_400_that_says_so(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await c.messages.create(model="up/gpt-test", max_tokens=10, messages=PROMPT)
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert message == (
        'model "up/gpt-test" is served by provider "up" of kind "openai", which does not'
        " answer Anthropic's Messages API (/v1/messages): name a model of an anthropic provider"
    )


async def test_oversized_bodies_bad_json_and_wrong_methods_are_in_the_envelope(
    start: Any,
) -> None:
    gateway = await start("[server]\nmax_body_mb = 1\n")
    url = gateway.url + "v1/messages"
    async with aiohttp.ClientSession() as session:
        answers = []
        for method, data in (("POST", b"x" * (2 << 20)), ("POST", b"{not json"), ("GET", None)):
            async with session.request(method, url, data=data) as resp:
                body = await resp.json()
                answers.append((resp.status, body["type"], body["error"]["type"]))
    assert answers == [
        (413, "error", "invalid_request_error"),
        (400, "error", "invalid_request_error"),
        (405, "error", "invalid_request_error"),
    ]


# --- the mock, and requests that cross API families --------------------------------------


async def test_the_mock_provider_answers_messages_with_cache_tokens(start: Any) -> None:
    gateway = await start()
    async with client(gateway) as c:
        answer = await c.messages.create(model="local/mock-small", max_tokens=100, messages=PROMPT)
        async with c.messages.stream(
            model="local/mock-small", max_tokens=100, messages=PROMPT
        ) as stream:
            streamed = await stream.get_final_message()
    assert answer.content[0].text.startswith("This is a mock answer to: Say hello.")  # type: ignore[union-attr]
    assert streamed.content[0].text == answer.content[0].text  # type: ignore[union-attr]
    rows = await gateway.rows()
    # 3 + (3 + ceil(9 / 4)) = 9 input tokens, none cached: the model's name has no "cache".
    assert [tokens(r) for r in rows] == [(9, 0, answer.usage.output_tokens)] * 2


async def test_a_model_of_an_anthropic_provider_on_chat_is_a_400_that_says_so(
    start: Any,
) -> None:
    gateway = await start()
    async with gateway.client() as c:
        with pytest.raises(openai.BadRequestError) as refused:
            await c.chat.completions.create(model="anth/claude-test", messages=PROMPT)  # type: ignore[arg-type]
    assert refused.value.body["message"] == (  # type: ignore[index]
        'model "anth/claude-test" is served by provider "anth" of kind "anthropic", which does'
        " not answer OpenAI's API: call it through /v1/messages"
    )


async def test_a_rule_without_a_model_trigger_never_moves_a_request_across_apis(
    start: Any, fake_anthropic: Any
) -> None:
    gateway = await start("""
[rules.to-gpt]
action = "change_model"
to = "up/gpt-test"
[rulesets.all]
when = "always"
rules = ["to-gpt"]
""")
    async with client(gateway) as c:
        answer = await c.messages.create(model="claude-test", max_tokens=10, messages=PROMPT)
    assert answer.model == "claude-test"
    rows = await gateway.rows()
    assert [(r["provider"], r["model"], r["status"]) for r in rows] == [
        ("anth", "claude-test", 200)
    ]


async def test_models_list_and_retrieve_in_anthropics_shape_for_the_anthropic_sdk(
    start: Any,
) -> None:
    gateway = await start()
    async with client(gateway) as anth:
        listed = [m async for m in anth.models.list()]
        one = await anth.models.retrieve("anth/claude-test")
        with pytest.raises(anthropic.NotFoundError) as missing:
            await anth.models.retrieve("anth/no-such-model")
    # Only the models /v1/messages can call: those of anthropic providers, in config order.
    assert [m.id for m in listed] == [f"anth/{model}" for model in MODELS]
    assert {m.type for m in listed} == {"model"}
    assert (one.id, one.type, one.display_name) == ("anth/claude-test", "model", "anth/claude-test")
    assert envelope_of(missing.value) == (404, "not_found_error")
    openai_client = gateway.client()
    ids = [m.id async for m in await openai_client.models.list()]
    assert "anth/claude-test" in ids and "up/gpt-test" in ids  # OpenAI's list has them all
    model = await openai_client.models.retrieve("up/gpt-test")
    assert (model.id, model.object, model.owned_by) == ("up/gpt-test", "model", "up")
    with pytest.raises(openai.NotFoundError) as not_listed:
        await openai_client.models.retrieve("up/nothing")
    assert not_listed.value.code == "model_not_found"


async def test_models_refuses_a_wrong_key_in_the_envelope_of_the_clients_api(start: Any) -> None:
    digest = hashlib.sha256(b"gw-secret").hexdigest()
    gateway = await start(f'[keys.app]\nhash = "sha256:{digest}"\n')
    async with client(gateway, api_key="wrong") as wrong:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.models.list()
    assert envelope_of(refused.value) == (401, "authentication_error")
    async with client(gateway, api_key="gw-secret") as right:
        assert [m.id async for m in right.models.list()][0] == "anth/claude-test"
