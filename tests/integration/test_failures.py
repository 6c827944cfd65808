"""Bad input, provider failures and hang-ups: a clear error, nothing forwarded when the
request is bad, and a ledger row for every request whatever happened."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.conftest import Gateway

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def _post(
    gateway: Gateway,
    body: Any,
    path: str = "v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with http.post(
            gateway.url + path,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as resp:
            return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"waystone": "{not json"}, "metadata.waystone: invalid JSON"),
        ({"waystone": json.dumps({"user": ""})}, "metadata.waystone.user"),
        ({"waystone": json.dumps({"user": 5})}, "metadata.waystone.user"),
        ({"waystone": json.dumps({"user": "a\nb"})}, "control characters"),
        ({"waystone": json.dumps({"user": "x" * 200})}, "metadata.waystone.user"),
        ({"waystone": json.dumps({"users": "alice"})}, "metadata.waystone"),
    ],
)
async def test_bad_identity_is_a_400_and_nothing_is_forwarded(
    gateway: Gateway, metadata: dict[str, Any], message: str
) -> None:
    status, body = await _post(gateway, {**CHAT, "metadata": metadata})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (400, "invalid_request")


async def test_bad_bodies_are_400s_with_the_openai_envelope(gateway: Gateway) -> None:
    assert await _post(gateway, b"{nope") == (
        400,
        {
            "error": {
                "message": "request body is not valid JSON: Expecting property name enclosed in double quotes: "
                "line 1 column 2 (char 1)",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request",
            }
        },
    )
    status, body = await _post(gateway, [1, 2])
    assert (status, body["error"]["message"]) == (400, "request body must be a JSON object")
    status, body = await _post(gateway, {"messages": []})
    assert (status, body["error"]["param"]) == (400, "model")
    assert gateway.provider.seen == []
    assert len(await gateway.rows()) == 3


async def test_unknown_paths_and_methods_get_the_openai_envelope(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.url + "v1/nope", json=CHAT) as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "error": {
                    "message": "Not Found",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "not_found",
                }
            }
        async with http.get(gateway.url + "v1/chat/completions") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
            assert (await resp.json())["error"]["code"] == "method_not_allowed"
        async with http.delete(gateway.url + "healthz") as resp:
            assert resp.status == 405
            assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
    assert gateway.provider.seen == []


async def test_an_unexpected_error_is_a_500_envelope_a_logged_traceback_and_a_row(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("daemon.request.proxy.resolve", broken)
    status, body = await _post(gateway, CHAT)
    assert (status, body["error"]) == (
        500,
        {
            "message": "internal error in the gateway",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        },
    )
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "unexpected error on POST /v1/chat/completions"
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["error"]) == (
        500,
        "error",
        "internal error: RuntimeError",
    )
    assert gateway.provider.seen == []


async def test_body_over_the_limit_is_a_413(start_gateway: Any) -> None:
    gateway = await start_gateway("[server]\nmax_body_mb = 0.01\n")
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 20_000}]}
    status, body = await _post(gateway, big)
    assert status == 413
    assert (
        body["error"]["message"]
        == "request body is over the limit of 0.01 MiB ([server] max_body_mb)"
    )
    [row] = await gateway.rows()
    assert row["status"] == 413


async def test_a_long_prompt_within_the_default_limit_goes_through(gateway: Gateway) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * (3 << 20)}]}
    status, _ = await _post(gateway, big)
    assert status == 200


async def test_unknown_and_ambiguous_models(gateway: Gateway) -> None:
    status, body = await _post(gateway, {**CHAT, "model": "nope"})
    assert (status, body["error"]["code"]) == (404, "model_not_found")
    status, body = await _post(gateway, {**CHAT, "model": "shared-model"})
    assert status == 400
    assert (
        "local/shared-model" in body["error"]["message"]
        and "up/shared-model" in body["error"]["message"]
    )
    assert gateway.provider.seen == []


async def test_provider_errors_pass_through_with_status_and_body(gateway: Gateway) -> None:
    client = gateway.client()
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(
            model="error-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "the fake provider failed",
        "type": "server_error",
        "code": None,
        "param": None,
    }
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"], row["model"]) == (500, "upstream_error", "error-model")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_provider_down_is_a_502(start_gateway: Any) -> None:
    gateway = await start_gateway(f"""
[providers.down]
base_url = "http://127.0.0.1:{_closed_port()}/v1"
models = ["gone"]
""")
    status, body = await _post(gateway, {**CHAT, "model": "gone"})
    assert (status, body["error"]["code"]) == (502, "upstream_error")
    assert 'provider "down" is unreachable' in body["error"]["message"]
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (502, "upstream_error")


async def test_provider_timeout_is_a_504(start_gateway: Any, aiohttp_server: Any) -> None:
    from aiohttp import web

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    slow = web.Application()
    slow.router.add_post("/v1/chat/completions", hang)
    server = await aiohttp_server(slow)
    gateway = await start_gateway(f"""
[providers.slow]
base_url = "{server.make_url("/v1")}"
models = ["sleepy"]
timeout_s = 0.3
""")
    status, body = await _post(gateway, {**CHAT, "model": "sleepy"})
    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (504, "upstream_timeout")


async def test_provider_cut_delivers_what_came_and_estimates_usage(gateway: Gateway) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions", json={**CHAT, "model": "cut-model", "stream": True}
        ) as resp,
    ):
        assert resp.status == 200
        received = (await resp.content.read()).decode()
    assert '"content": "Hel"' in received and '"content": "lo "' in received
    [row] = await gateway.rows()
    assert (row["outcome"], row["usage_estimated"], row["status"]) == ("upstream_cut", True, 200)
    assert (
        row["output_tokens"] == 2
    )  # "Hello " is 6 characters: the ≈4-characters-a-token estimate rounds up


async def test_client_hang_up_cancels_upstream_and_is_recorded(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            gateway.url + "v1/chat/completions",
            json={**CHAT, "model": "slow-model", "stream": True},
        )
        await resp.content.readany()
        resp.close()
    for _ in range(50):
        rows = await gateway.rows()
        if rows and gateway.provider.hung_up:
            break
        await asyncio.sleep(0.1)
    [row] = rows
    assert row["outcome"] == "client_closed"
    assert gateway.provider.hung_up == ["slow-model"]


async def test_gateway_keys_are_required_once_configured(start_gateway: Any) -> None:
    import hashlib

    digest = hashlib.sha256(b"ws-secret").hexdigest()
    gateway = await start_gateway(f'[keys.app]\nhash = "sha256:{digest}"\n')
    with pytest.raises(openai.AuthenticationError):
        await gateway.client(api_key="wrong").chat.completions.create(**CHAT)
    done = await gateway.client(api_key="ws-secret").chat.completions.create(**CHAT)
    assert done.choices[0].message.content == "Hello from fake"
    assert gateway.provider.seen[-1].headers["Authorization"] != "Bearer ws-secret"
    rows = await gateway.rows()
    assert [(r["status"], r["outcome"]) for r in rows] == [(401, "unauthorized"), (200, "ok")]


async def test_require_identity_refuses_anonymous_requests(start_gateway: Any) -> None:
    gateway = await start_gateway("[server]\nrequire_identity = true\n")
    status, body = await _post(gateway, CHAT)
    assert status == 400 and "requires an identity" in body["error"]["message"]
    status, _ = await _post(gateway, CHAT, headers={"X-Waystone-User": "dan"})
    assert status == 200


async def test_an_unset_provider_key_variable_is_a_502_and_nothing_goes_upstream(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await start_gateway()
    monkeypatch.delenv("FAKE_PROVIDER_KEY")
    status, body = await _post(gateway, CHAT, headers={"X-Waystone-User": "alice"})
    assert (status, body) == (
        502,
        {
            "error": {
                "message": 'provider "up" has no API key: '
                "environment variable FAKE_PROVIDER_KEY is not set",
                "type": "upstream_error",
                "param": None,
                "code": "upstream_error",
            }
        },
    )
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert (row["user_id"], row["status"], row["outcome"]) == ("alice", 502, "upstream_error")
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "readyz") as resp:
        ready = await resp.json()
    assert ready["warnings"] == [
        "providers.up.api_key: environment variable FAKE_PROVIDER_KEY is not set "
        '(calls to provider "up" will fail)'
    ]
