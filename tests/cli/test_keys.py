"""``waystone key create|list|revoke``."""

from __future__ import annotations

import hashlib
import json
import re

from tests.cli.conftest import FROZEN, Cli


def test_create_prints_the_key_once_and_stores_its_hash(cli: Cli, read_config, config_path) -> None:
    run = cli("key", "create", "backend")
    assert run.exit_code == 0
    assert re.fullmatch(r"ws-[A-Za-z0-9_-]{43}\n", run.stdout)
    assert run.stderr == 'Key "backend" created. Store it now: it cannot be shown again.\n'
    key = run.stdout.strip()
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert read_config() == {"keys": {"backend": {"hash": f"sha256:{digest}", "created": FROZEN}}}
    assert key not in config_path.read_text()
    assert cli("key", "list").stdout == (
        "key       created            hash\n"
        "─────────────────────────────────────────────────\n"
        f"backend   2026-11-01 09:30   sha256:{digest[:12]}…\n"
    )
    assert json.loads(cli("key", "list", "--json").stdout) == [
        {"name": "backend", "created": "2026-11-01T09:30:00+00:00", "hash": f"sha256:{digest}"}
    ]


def test_two_keys_differ_and_names_are_unique(cli: Cli) -> None:
    first = cli("key", "create", "a").stdout
    assert cli("key", "create", "b").stdout != first
    again = cli("key", "create", "a")
    assert (again.exit_code, again.stdout, again.stderr) == (
        1,
        "",
        'error: key "a" already exists (revoke it first to replace it)\n',
    )


def test_revoke(cli: Cli, read_config) -> None:
    cli("key", "create", "a")
    cli("key", "create", "b")
    assert cli("key", "revoke", "a").stdout == "Revoked key a.\n"
    assert list(read_config()["keys"]) == ["b"]
    run = cli("key", "revoke", "a")
    assert (run.exit_code, run.stderr) == (1, 'error: no key named "a"\n')


def test_revoking_the_last_key_beyond_loopback_is_refused(
    cli: Cli, write_config, read_config
) -> None:
    write_config('[server]\nhost = "0.0.0.0"\n')
    cli("key", "create", "only")
    run = cli("key", "revoke", "only")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        'error: refusing to revoke "only", the last gateway key: [server] host is 0.0.0.0, '
        "and beyond loopback the gateway never runs without a key (create another key "
        "first, or set host to 127.0.0.1)\n",
    )
    assert list(read_config()["keys"]) == ["only"]
    cli("key", "create", "next")
    assert cli("key", "revoke", "only").exit_code == 0
    assert list(read_config()["keys"]) == ["next"]


def test_revoking_the_last_key_on_loopback_says_the_gateway_is_now_open(
    cli: Cli, read_config
) -> None:
    cli("key", "create", "only")
    run = cli("key", "revoke", "only")
    assert (run.exit_code, run.stdout, run.stderr) == (
        0,
        "Revoked key only.\n",
        "No gateway key is left: the gateway now serves loopback clients without a key.\n",
    )
    assert "keys" not in read_config()
