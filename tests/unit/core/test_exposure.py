"""The rule that ties gateway keys to the address the gateway listens on."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.server import serve
from daemon.state import Settings
from waystone_cli.core.errors import UsageError
from waystone_cli.core.exposure import is_loopback, open_without_keys


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("gateway.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_a_keyless_gateway_beyond_loopback_is_open() -> None:
    assert open_without_keys("0.0.0.0", 0)
    assert not open_without_keys("0.0.0.0", 1)
    assert not open_without_keys("127.0.0.1", 0)


async def test_the_daemon_refuses_to_start_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    settings = Settings(
        config_path=tmp_path / "config.toml",
        ledger_path=tmp_path / "ledger.duckdb",
        socket_path=None,
        host="0.0.0.0",
    )
    with pytest.raises(UsageError) as caught:
        await serve(settings)
    assert str(caught.value) == (
        "refusing to listen on 0.0.0.0 without a gateway key: create one with "
        "`waystone key create NAME`, or listen on 127.0.0.1"
    )
