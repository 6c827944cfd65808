"""Config reload: a valid change takes effect within two seconds; an invalid one is
refused and the previous config stays in force."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from daemon.state import CONFIG
from tests.integration.conftest import Gateway

CHAT = {"model": "fresh-model", "messages": [{"role": "user", "content": "hi"}]}


async def _until(predicate: Any, timeout: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def test_a_new_provider_takes_effect_without_restart(gateway: Gateway) -> None:
    client = gateway.client()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(**CHAT)
    path = gateway.home / "config.toml"
    path.write_text(
        path.read_text() + '\n[providers.fresh]\nkind = "mock"\nmodels = ["fresh-model"]\n'
    )
    assert await _until(lambda: "fresh" in gateway.app[CONFIG].current.config.providers)
    done = await client.chat.completions.create(**CHAT)
    assert done.choices[0].message.content


async def test_an_invalid_config_keeps_the_last_good_one(gateway: Gateway) -> None:
    path = gateway.home / "config.toml"
    good = gateway.app[CONFIG].current
    path.write_text(path.read_text() + "\n[providers.broken]\nbase_url = 42\n")
    assert await _until(lambda: gateway.app[CONFIG].last_error is not None)
    assert gateway.app[CONFIG].current is good
    assert (
        gateway.app[CONFIG].last_error
        == "providers.broken.base_url: expected a string, got an integer (line 23)"
    )
    done = await gateway.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}]
    )
    assert done.choices[0].message.content == "Hello from fake"


async def test_sighup_reloads(gateway: Gateway) -> None:
    path = gateway.home / "config.toml"
    gateway.app[CONFIG].current = gateway.app[CONFIG].current  # unchanged snapshot
    text = path.read_text() + '\n[providers.hup]\nkind = "mock"\nmodels = ["hup-model"]\n'
    stat = path.stat()
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the watch alone might miss it
    os.kill(os.getpid(), signal.SIGHUP)
    assert await _until(lambda: "hup" in gateway.app[CONFIG].current.config.providers)


KEY = "ws-reload-secret"
KEYS = f'[keys.app]\nhash = "sha256:{hashlib.sha256(KEY.encode()).hexdigest()}"\n'
ASK = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}


async def _readyz_config(gateway: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "readyz") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return dict(body["checks"]["config"])


async def _rewrite_non_atomically(path: Path, good: str, times: int) -> None:
    """What an editor saving by truncate-then-write does, each state held long enough for
    the watch to see it: empty, then a partial write without [keys], then the whole file."""
    partial = good.split("[keys.app]")[0]
    for _ in range(times):
        with path.open("w") as f:
            f.flush()
            await asyncio.sleep(0.06)
            f.write(partial)
            f.flush()
            await asyncio.sleep(0.06)
            f.write(good[len(partial) :])
        await asyncio.sleep(0.06)


async def _traffic(gateway: Gateway, done: asyncio.Event) -> tuple[list[int], list[int]]:
    """Requests with and without the key until ``done`` (at most 3,000 of each)."""
    client = gateway.client(api_key=KEY)
    with_key: list[int] = []
    without_key: list[int] = []
    async with aiohttp.ClientSession() as http:
        while not done.is_set() and len(with_key) < 3000:
            try:
                await client.chat.completions.create(**ASK)
                with_key.append(200)
            except openai.APIStatusError as err:
                with_key.append(err.status_code)
            async with http.post(gateway.url + "v1/chat/completions", json=ASK) as resp:
                without_key.append(resp.status)
    return with_key, without_key


async def test_non_atomic_rewrites_never_serve_without_a_key_nor_404(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(KEYS, host="0.0.0.0", watch_interval_s=0.02)
    path = gateway.home / "config.toml"
    done = asyncio.Event()
    traffic = asyncio.create_task(_traffic(gateway, done))
    await _rewrite_non_atomically(path, path.read_text(), times=20)
    done.set()
    with_key, without_key = await traffic
    assert with_key and set(with_key) == {200}
    assert without_key and set(without_key) == {401}
    assert len(gateway.provider.seen) == len(with_key)
    refusals = {
        r.getMessage()
        for r in caplog.records
        if r.name == "waystone.config" and r.levelno == logging.ERROR
    }
    assert refusals == {
        f"config not reloaded, the previous one stays in force: {path}: the file is empty",
        "config not reloaded, the previous one stays in force: the new config has no "
        "gateway key, and the gateway listens on 0.0.0.0: beyond loopback it never runs "
        "without one",
    }
    assert await _readyz_config(gateway) == {"ok": True, "error": None}


async def test_a_deleted_config_keeps_the_last_good_one_and_readyz_says_so(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(KEYS, watch_interval_s=0.02)
    path = gateway.home / "config.toml"
    good_text, good = path.read_text(), gateway.app[CONFIG].current
    path.unlink()
    assert await _until(lambda: gateway.app[CONFIG].last_error is not None)
    assert gateway.app[CONFIG].current is good
    message = f"{path}: the file is missing"
    assert await _readyz_config(gateway) == {"ok": False, "error": message}
    done = await gateway.client(api_key=KEY).chat.completions.create(**ASK)
    assert done.choices[0].message.content == "Hello from fake"
    path.write_text(good_text)
    assert await _until(lambda: gateway.app[CONFIG].last_error is None)
    assert await _readyz_config(gateway) == {"ok": True, "error": None}


async def test_invalid_utf8_is_a_config_error_and_the_watch_goes_on(start_gateway: Any) -> None:
    gateway = await start_gateway(watch_interval_s=0.02)
    path = gateway.home / "config.toml"
    good_text, good = path.read_text(), gateway.app[CONFIG].current
    path.write_bytes(good_text.encode() + b"\n# caf\xe9 in Latin-1\n")
    assert await _until(lambda: gateway.app[CONFIG].last_error is not None)
    assert gateway.app[CONFIG].current is good
    message = f"{path}: not valid UTF-8 (byte 0xe9 at offset {len(good_text) + 6})"
    assert await _readyz_config(gateway) == {"ok": False, "error": message}
    path.write_text(good_text + '\n[providers.fresh]\nkind = "mock"\nmodels = ["fresh-model"]\n')
    assert await _until(lambda: "fresh" in gateway.app[CONFIG].current.config.providers)
    assert await _readyz_config(gateway) == {"ok": True, "error": None}


async def test_a_loopback_gateway_may_drop_its_last_key(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(KEYS, watch_interval_s=0.02)
    caplog.set_level(logging.INFO, logger="waystone.config")
    path = gateway.home / "config.toml"
    path.write_text(path.read_text().split("[keys.app]")[0])
    assert await _until(lambda: not gateway.app[CONFIG].current.config.keys)
    assert gateway.app[CONFIG].last_error is None
    assert [r.getMessage() for r in caplog.records if r.name == "waystone.config"] == [
        f"config reloaded from {path}",
        "the last gateway key is gone: loopback clients are served without one",
    ]
    done = await gateway.client(api_key="anything").chat.completions.create(**ASK)
    assert done.choices[0].message.content == "Hello from fake"


async def test_a_file_is_reloaded_only_once_it_stayed_unchanged_for_one_poll(
    start_gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway(watch_interval_s=0.2)
    caplog.set_level(logging.INFO, logger="waystone.config")
    path = gateway.home / "config.toml"
    text = path.read_text()
    for _ in range(3):
        with path.open("w") as f:
            f.write(text.split("[providers.local]")[0])  # valid, but without providers.local
            f.flush()
            await asyncio.sleep(0.05)
            f.write(text[len(text.split("[providers.local]")[0]) :])
        await asyncio.sleep(0.05)
    assert await _until(lambda: any("reloaded" in r.getMessage() for r in caplog.records))
    await asyncio.sleep(0.5)
    assert [r.getMessage() for r in caplog.records if r.name == "waystone.config"] == [
        f"config reloaded from {path}"
    ]
    assert "local" in gateway.app[CONFIG].current.config.providers
