"""Fixtures for running the real daemon app against the fake provider on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.app import create_app
from daemon.state import LEDGER, Settings
from tests.integration.fake_provider import FakeProvider

PROVIDER_KEY = "sk-fake-provider-key"

BASE_CONFIG = """\
[providers.up]
base_url = "{base_url}"
api_key = "env:FAKE_PROVIDER_KEY"
models = ["gpt-test", "cut-model", "error-model", "slow-model", "flaky-model", "embed-test",
          "whisper-test", "mod-test", "shared-model", "o3", "o3-mini"]
timeout_s = 5

[providers.local]
kind = "mock"
models = ["mock-small", "mock-large", "shared-model"]

[prices."up/gpt-test"]
input = 1.0
output = 2.0
cached_input = 0.5

[prices."embed-test"]
input = 0.1
output = 0.0
"""


@dataclass
class Gateway:
    app: web.Application
    server: TestServer
    home: Path
    provider: FakeProvider

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    def client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + "v1",
            api_key=kwargs.pop("api_key", "client-key-not-for-upstream"),
            max_retries=0,
            **kwargs,
        )

    async def rows(self, sql: str = "SELECT * FROM requests ORDER BY ts") -> list[dict[str, Any]]:
        writer = self.app[LEDGER]
        await writer.flush()

        def run(con: Any) -> list[dict[str, Any]]:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return await writer.run_in_db(run)


@pytest.fixture
async def fake_provider(aiohttp_server: Any) -> tuple[FakeProvider, TestServer]:
    provider = FakeProvider()
    server = await aiohttp_server(provider.app())
    return provider, server


@pytest.fixture
def write_config(
    waystone_home: Path,
    fake_provider: tuple[FakeProvider, TestServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[str], Path]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", PROVIDER_KEY)
    _, server = fake_provider
    base_url = str(server.make_url("/v1"))

    def write(extra: str = "") -> Path:
        path = waystone_home / "config.toml"
        path.write_text((BASE_CONFIG + "\n" + extra).replace("{base_url}", base_url))
        return path

    return write


@pytest.fixture
async def start_gateway(
    aiohttp_server: Any,
    waystone_home: Path,
    write_config: Callable[[str], Path],
    fake_provider: tuple[FakeProvider, TestServer],
) -> AsyncIterator[Callable[..., Any]]:
    async def start(extra: str = "", **settings: Any) -> Gateway:
        config_path = write_config(extra)
        app = create_app(
            Settings(
                config_path=config_path,
                ledger_path=waystone_home / "ledger.duckdb",
                socket_path=waystone_home / "admin.sock",
                **settings,
            )
        )
        server = await aiohttp_server(app)
        return Gateway(app, server, waystone_home, fake_provider[0])

    yield start


@pytest.fixture
async def gateway(start_gateway: Callable[..., Any]) -> Gateway:
    gw: Gateway = await start_gateway()
    return gw
