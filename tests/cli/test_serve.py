"""``waystone serve``: its options are checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.servers import free_port


@pytest.mark.parametrize("port", ["0", "99999", "-1"])
def test_a_port_out_of_range_is_misuse(cli: Cli, port: str, waystone_home: Path) -> None:
    run = cli("serve", "--port", port)
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr == (
        f"error: Invalid value for '--port': {port} is not in the range 1<=x<=65535. "
        "(see 'waystone serve --help')\n"
    )
    assert sorted(p.name for p in waystone_home.iterdir()) == []


@pytest.mark.parametrize("host", ["bad host", "a..b", "-x", ""])
def test_a_host_that_is_neither_an_address_nor_a_name_is_misuse(cli: Cli, host: str) -> None:
    run = cli("serve", "--host", host)
    assert (run.exit_code, run.stdout, run.stderr) == (
        2,
        "",
        f"error: Invalid value for '--host': \"{host}\" is not an IP address or host name "
        "(see 'waystone serve --help')\n",
    )


def test_a_config_host_that_is_not_a_host_is_refused(cli: Cli, write_config) -> None:
    write_config('[server]\nhost = "0.0.0.0:8787"\n')
    run = cli("config", "validate")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: server.host: "0.0.0.0:8787" is not an IP address or host name (line 2)\n',
    )


def test_help_shows_the_server_table_names(cli: Cli) -> None:
    text = cli("serve", "--help").stdout
    assert text.count("(default: [server]") == 3
    assert "default:  " not in text


def test_serve_with_no_config_says_so_and_that_nothing_is_served(
    cli: Cli, waystone_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr("daemon.server.run", started.append)
    run = cli("serve", "--port", "9001")
    assert (run.exit_code, run.stdout, run.stderr) == (
        0,
        "waystone 0.1.0 serving http://127.0.0.1:9001/v1\n"
        f"  config     {waystone_home / 'config.toml'} (no file: defaults)\n"
        f"  ledger     {waystone_home / 'ledger.duckdb'}\n"
        f"  socket     {waystone_home / 'admin.sock'}\n"
        "  providers  none\n"
        "  rulesets   none\n"
        "  auth       no gateway keys: loopback only\n",
        f"warning: no config file at {waystone_home / 'config.toml'} "
        "(create one with `waystone init`)\n"
        "warning: no provider configured: every model request will be refused "
        "(add one with `waystone provider add`)\n",
    )
    assert [s.port for s in started] == [9001]


def test_serve_names_a_postgres_ledger_without_its_password(
    cli: Cli, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("daemon.server.run", lambda settings: None)
    write_config('[ledger]\nurl = "postgresql://me:secret@db.internal:5432/waystone"\n')
    run = cli("serve", "--port", "9001")
    assert run.exit_code == 0
    assert "  ledger     postgres postgresql://me:***@db.internal:5432/waystone\n" in run.stdout
    assert "secret" not in run.stdout + run.stderr


def test_serve_reports_gateway_keys(
    cli: Cli, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("daemon.server.run", lambda settings: None)
    cli("init")
    assert cli("key", "create", "ci").exit_code == 0
    run = cli("serve")
    assert "  auth       gateway keys (1 key)\n" in run.stdout
    assert "  providers  local (mock): mock-small, mock-large\n" in run.stdout
    assert run.stderr == ""


def test_several_workers_without_shared_servers_is_misuse_before_anything_starts(
    cli: Cli, waystone_home: Path, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr("daemon.server.run", started.append)
    monkeypatch.setattr("daemon.process.workers.supervise", started.append)
    write_config('[cluster]\nredis_url = "redis://127.0.0.1:1/0"\n')
    run = cli("serve", "--workers", "2")
    assert (run.exit_code, run.stdout, run.stderr) == (
        2,
        "",
        "error: serve --workers 2 needs [ledger] url: the workers share their counters "
        "through Redis and their ledger in Postgres (one DuckDB file opens in one process "
        "only)\n",
    )
    assert started == []
    assert sorted(p.name for p in waystone_home.iterdir()) == ["config.toml"]


def test_several_workers_beyond_loopback_without_a_key_are_refused_before_any_starts(
    cli: Cli, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr("daemon.process.workers.supervise", started.append)
    write_config(
        '[server]\nhost = "0.0.0.0"\n\n[cluster]\nredis_url = "redis://127.0.0.1:1/0"\n\n'
        '[ledger]\nurl = "postgresql://u@127.0.0.1:1/db"\n'
    )
    run = cli("serve", "--workers", "2")
    assert (run.exit_code, run.stderr) == (
        2,
        "warning: no provider configured: every model request will be refused (add one "
        "with `waystone provider add`)\n"
        "error: refusing to listen on 0.0.0.0 without a gateway key: create one with "
        "`waystone key create NAME`, or listen on 127.0.0.1\n",
    )
    assert started == []


def test_several_workers_are_announced_by_name_then_supervised(
    cli: Cli, waystone_home: Path, write_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervised = []

    def supervise(specs, log_format: str) -> int:  # type: ignore[no-untyped-def]
        supervised.append(([s.name for s in specs], [s.command[-4:] for s in specs]))
        return 0

    monkeypatch.setattr("daemon.process.workers.supervise", supervise)
    monkeypatch.setenv("WAYSTONE_INSTANCE", "eu")
    write_config(
        '[cluster]\nredis_url = "redis://127.0.0.1:1/0"\n\n'
        '[ledger]\nurl = "postgresql://u@127.0.0.1:1/db"\n\n'
        '[providers.local]\nkind = "mock"\nmodels = ["mock-small"]\n'
    )
    port = str(free_port())  # probed by the parent before it supervises
    run = cli("serve", "--workers", "2", "--port", port)
    assert (run.exit_code, run.stderr) == (0, "")
    assert run.stdout == (
        f"waystone 0.1.0 serving http://127.0.0.1:{port}/v1\n"
        f"  config     {waystone_home / 'config.toml'}\n"
        "  ledger     postgres postgresql://u@127.0.0.1:1/db\n"  # where the workers write
        f"  socket     {waystone_home / 'admin.sock'}\n"
        "  providers  local (mock): mock-small\n"
        "  rulesets   none\n"
        "  auth       no gateway keys: loopback only\n"
        "  workers    2: eu-w1, eu-w2\n"
    )
    assert supervised == [
        (
            ["eu-w1", "eu-w2"],
            [["--port", port, "--worker", "1"], ["--port", port, "--worker", "2"]],
        )
    ]
