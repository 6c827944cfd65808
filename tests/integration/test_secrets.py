"""Configured secrets never leave the gateway: not to the client, the ledger, the log or
a span, even when a provider's error page echoes the headers it received."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestServer

from daemon.state import OBSERVER
from daemon.telemetry.tracing import flush
from tests.integration.conftest import PROVIDER_KEY, Gateway
from tests.integration.fake_provider import FakeProvider
from tests.integration.test_observability import CLIENT, Receiver

URL_PASSWORD = "url-password-0123"


@pytest.mark.parametrize(("model", "status"), [("echo-401-model", 401), ("echo-500-model", 500)])
async def test_an_error_page_echoing_the_provider_key_is_redacted_everywhere(
    start_gateway: Any,
    fake_provider: tuple[FakeProvider, TestServer],
    aiohttp_server: Any,
    caplog: pytest.LogCaptureFixture,
    model: str,
    status: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    collector = receiver.server = await aiohttp_server(receiver.app())
    base_url = str(fake_provider[1].make_url("/v1"))
    with_credentials = base_url.replace("http://", f"http://waystone:{URL_PASSWORD}@")
    gateway: Gateway = await start_gateway(
        f'[otel]\nendpoint = "{collector.make_url("")}"\n'
        f'[providers.leaky]\nbase_url = "{with_credentials}"\n'
        f'api_key = "env:FAKE_PROVIDER_KEY"\nmodels = ["{model}"]\n'
    )
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    echoed = fake_provider[0].seen[-1].headers["Authorization"]
    assert echoed == f"Bearer {PROVIDER_KEY}"  # the provider did get the key, and echoed it

    answer = caught.value.response.text
    assert caught.value.status_code == status
    assert "Authorization: Bearer [redacted]" in answer and PROVIDER_KEY not in answer
    [row] = await gateway.rows("SELECT status, error FROM requests")
    assert row["status"] == status
    assert "Authorization: Bearer [redacted]" in row["error"]
    assert PROVIDER_KEY not in row["error"]
    tracing = gateway.app[OBSERVER].tracing
    assert tracing is not None
    await flush(tracing)
    assert receiver.exports, "no span was exported"
    assert not any(PROVIDER_KEY.encode() in export for export in receiver.exports)
    assert not any(URL_PASSWORD.encode() in export for export in receiver.exports)
    [upstream] = [s for s in receiver.spans if s.kind == CLIENT]
    assert upstream.attributes["url.full"] == f"{base_url}/chat/completions"
    assert PROVIDER_KEY not in caplog.text and URL_PASSWORD not in caplog.text
