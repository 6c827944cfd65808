"""The anthropic provider kind: what goes upstream, to a real server on loopback."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from daemon.providers.anthropic import HttpAnthropic
from daemon.providers.http_client import HttpClient
from waystone_cli.core.config import ProviderConfig
from waystone_cli.core.errors import UpstreamError


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[str, list[web.Request]]:
    seen: list[web.Request] = []

    async def messages(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": await request.json()})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    server = await aiohttp_server(app)
    return str(server.make_url("/")), seen


async def send(base_url: str, incoming: dict[str, str], **config: Any) -> int:
    provider = HttpAnthropic(
        ProviderConfig(name="anth", kind="anthropic", base_url=base_url, **config), 1 << 20
    )
    client = HttpClient()
    try:
        reply = await provider.send(client, "messages", {"model": "c"}, "c", False, incoming, None)
        await reply.read()
        return reply.status
    finally:
        client.close()


async def test_the_key_goes_as_x_api_key_with_the_default_version(
    upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = upstream
    monkeypatch.setenv("ANTH_KEY", "sk-ant-real")
    incoming = {"Authorization": "Bearer gateway-key", "x-api-key": "gateway-key"}
    assert await send(url, incoming, api_key="env:ANTH_KEY") == 200
    [request] = seen
    assert request.headers["x-api-key"] == "sk-ant-real"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in request.headers
    assert request.path == "/v1/messages"


async def test_the_clients_version_and_beta_pass_through(upstream: Any) -> None:
    url, seen = upstream
    incoming = {"anthropic-version": "2024-01-01", "anthropic-beta": "a,b", "cookie": "c=1"}
    assert await send(url, incoming, api_key="sk-inline", headers={"x-team": "t"}) == 200
    headers = seen[0].headers
    assert (headers["anthropic-version"], headers["anthropic-beta"]) == ("2024-01-01", "a,b")
    assert (headers["x-api-key"], headers["x-team"]) == ("sk-inline", "t")
    assert "cookie" not in headers


async def test_a_key_variable_that_is_not_set_fails_the_call(
    upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = upstream
    monkeypatch.delenv("ANTH_MISSING", raising=False)
    with pytest.raises(UpstreamError, match="ANTH_MISSING is not set"):
        await send(url, {}, api_key="env:ANTH_MISSING")
    assert seen == []


async def test_a_base_url_ending_in_v1_is_the_same_root(upstream: Any) -> None:
    url, seen = upstream
    assert await send(url + "v1/", {}, api_key="k") == 200
    assert [r.path for r in seen] == ["/v1/messages"]
