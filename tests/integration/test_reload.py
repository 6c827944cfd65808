"""Config reload: a valid change takes effect within two seconds; an invalid one is
refused and the previous config stays in force."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

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
