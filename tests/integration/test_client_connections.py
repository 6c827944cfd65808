"""Client connections are bounded: a client that sends its request headers too slowly,
a line the server cannot parse as a request, and an idle keep-alive connection are all
closed after ``[server] client_timeout_s``; malformed requests cannot flood the log.
The daemon runs as ``waystone serve`` runs it (``daemon.server.serve``), on a free
loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.request.refusals import ROWS_PER_MINUTE
from daemon.server import serve
from daemon.state import OBSERVER, Settings
from tests.integration.conftest import Gateway
from waystone_cli.demo import free_port

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
TIMEOUT_S = 1.0
# Long enough for the bound plus a loaded machine; far below aiohttp's own default.
GRACE_S = 6.0

CONFIG = """\
[server]
client_timeout_s = {timeout}

[providers.local]
kind = "mock"
models = ["mock-small"]
"""


@pytest.fixture
async def port(waystone_home: Path) -> AsyncIterator[int]:
    port = free_port()
    config = waystone_home / "config.toml"
    config.write_text(CONFIG.format(timeout=TIMEOUT_S))
    settings = Settings(
        config_path=config,
        ledger_path=waystone_home / "ledger.duckdb",
        socket_path=None,
        host="127.0.0.1",
        port=port,
    )
    ready = asyncio.Event()
    threshold = gc.get_threshold()
    task = asyncio.create_task(serve(settings, ready), name="test-serve")
    started = asyncio.create_task(ready.wait(), name="test-serve-ready")
    await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        task.result()  # why it did not start
    assert ready.is_set(), "the daemon did not start within 30 s"
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # serve() tunes the collector for a daemon's life: give the test process its own back.
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def _closed_after(reader: asyncio.StreamReader) -> float:
    """Seconds until the server closes the connection (what it sent before is read)."""
    started = time.monotonic()
    async with asyncio.timeout(GRACE_S):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def test_headers_sent_a_byte_at_a_time_are_cut_off(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        for _ in range(int(GRACE_S / 0.1)):  # bounded: the test's own deadline
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle(), name="slowloris")
    try:
        elapsed = await _closed_after(reader)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
    assert TIMEOUT_S * 0.9 <= elapsed < GRACE_S


async def test_many_connections_that_never_finish_their_headers_are_all_closed(
    port: int,
) -> None:
    async def half_request() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            await writer.drain()
            return await _closed_after(reader)
        finally:
            writer.close()

    elapsed = await asyncio.gather(*(half_request() for _ in range(200)))
    assert len(elapsed) == 200 and max(elapsed) < GRACE_S


async def test_an_http_0_9_line_does_not_hold_the_connection(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /\r\n")
    await writer.drain()
    try:
        assert await _closed_after(reader) < GRACE_S
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=GRACE_S)
        assert head.startswith(b"HTTP/1.1 200")
        elapsed = await _closed_after(reader)  # the body, then nothing until closed
        assert TIMEOUT_S * 0.9 <= elapsed < GRACE_S
    finally:
        writer.close()


async def _send_raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(GRACE_S):
            return await reader.read()
    finally:
        writer.close()


async def _metric(port: int, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


BAD_LENGTH = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
LONG_HEADER = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"


async def test_malformed_requests_log_one_traceback_per_cause_and_count_every_one(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for payload in [BAD_LENGTH] * 10 + [LONG_HEADER] * 10:
        assert (await _send_raw(port, payload)).startswith(b"HTTP/1.0 400 Bad Request")
    logged = [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert [(r.levelname, type(r.exc_info[1]).__name__) for r in logged if r.exc_info] == [
        ("ERROR", "BadHttpMessage"),
        ("ERROR", "LineTooLong"),
    ]
    assert await _metric(port, "waystone_request_errors_total") == {
        (("cause", "BadHttpMessage"),): 10.0,
        (("cause", "LineTooLong"),): 10.0,
    }


async def test_a_repeated_unexpected_error_logs_one_traceback_and_counts_each(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("daemon.request.proxy.resolve", broken)
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.post(gateway.url + "v1/chat/completions", json=CHAT) as resp:
                assert resp.status == 500
        async with http.get(gateway.url + "metrics") as resp:
            text = await resp.text()
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage() == "unexpected error on POST /v1/chat/completions"
    assert 'waystone_request_errors_total{cause="RuntimeError"} 5.0' in text
    assert len(await gateway.rows()) == 5  # every request still has its row


async def test_refused_unauthenticated_rows_are_rate_limited_but_keyed_ones_never(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = "ws-the-one-valid-gateway-key"
    digest = hashlib.sha256(key.encode()).hexdigest()
    gateway: Gateway = await start_gateway(f'[keys.app]\nhash = "sha256:{digest}"\n')
    caplog.set_level(logging.INFO)
    for _ in range(25):
        with pytest.raises(openai.AuthenticationError):
            await gateway.client(api_key="ws-wrong").chat.completions.create(**CHAT)
    keyed = gateway.client(api_key=key)
    for _ in range(ROWS_PER_MINUTE + 5):  # refused with a valid key: every row is kept
        with pytest.raises(openai.NotFoundError):
            await keyed.chat.completions.create(model="no-such-model", messages=[])
    rows = await gateway.rows("SELECT status, outcome FROM requests")
    by_outcome = {(r["status"], r["outcome"]) for r in rows}
    assert by_outcome == {(401, "unauthorized"), (404, "not_found")}
    # The minute may turn during the loop: the allowance is then granted once more.
    unauthorized = sum(1 for r in rows if r["outcome"] == "unauthorized")
    assert unauthorized in (ROWS_PER_MINUTE, 2 * ROWS_PER_MINUTE)
    assert sum(1 for r in rows if r["outcome"] == "not_found") == ROWS_PER_MINUTE + 5
    scrape = {"Authorization": f"Bearer {key}"}  # with keys, /metrics asks for one too
    async with (
        aiohttp.ClientSession() as http,
        http.get(gateway.url + "metrics", headers=scrape) as resp,
    ):
        text = await resp.text()
    assert (
        f'waystone_refused_rows_dropped_total{{cause="unauthorized"}} {25 - unauthorized}.0' in text
    )
    assert (
        'waystone_requests_total{outcome="unauthorized",route="chat/completions",status="401"} 25.0'
        in text
    )
    lines = [
        r for r in caplog.records if r.name == "waystone.request" and "status=401" in r.getMessage()
    ]
    assert len(lines) == unauthorized  # a dropped row has no log line either
    gateway.app[OBSERVER].refused_rows.summarize()
    [summary] = [r for r in caplog.records if r.getMessage().startswith("dropped the ledger rows")]
    assert summary.getMessage() == (
        f"dropped the ledger rows of {25 - unauthorized} refused unauthenticated requests "
        f"(unauthorized={25 - unauthorized}) from 1 addresses "
        f"(kept: {ROWS_PER_MINUTE} a minute per address and cause)"
    )
