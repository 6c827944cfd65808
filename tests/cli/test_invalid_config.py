"""Read-only commands keep working while ``config.toml`` does not validate."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import Cli
from tests.cli.test_usage import TOP, frozen_now, ledger  # noqa: F401 (fixtures)

BROKEN = """\
[providers.local]
kind = "mock"
models = ["mock-small"]

[users.alice]
metadata = { tier = "free" }

[rules.cap]
action = "blok"
"""
WARNING = (
    'warning: the config does not validate: rules.cap.action: unknown action "blok" '
    "(one of block, change_model, fallback, limit_tokens, check_output, dataset, retain, "
    "capture, flag) (line 9)\n"
)


@pytest.mark.usefixtures("ledger")
@pytest.mark.parametrize("ledger", ["duckdb"], indirect=True)  # the config is its own
def test_usage_top_reads_the_ledger_and_warns_once(cli: Cli, write_config) -> None:
    write_config(BROKEN)
    run = cli("usage", "top", "--since", "2026-11-01")
    assert (run.exit_code, run.stdout, run.stderr) == (0, TOP, WARNING)


def test_user_list_shows_the_declared_users_that_still_validate(cli: Cli, write_config) -> None:
    write_config(BROKEN)
    run = cli("user", "list", "--json")
    assert (run.exit_code, run.stderr) == (0, WARNING)
    assert [(r["id"], r["metadata"]) for r in json.loads(run.stdout)] == [
        ("alice", {"tier": "free"})
    ]


def test_prices_check_keeps_working(cli: Cli, write_config) -> None:
    write_config(BROKEN)
    run = cli("prices", "check", "--json")
    assert (run.exit_code, run.stderr) == (0, WARNING)
    assert json.loads(run.stdout) == {
        "seen": [],
        "configured": [{"provider": "local", "model": "mock-small"}],
    }


def test_writes_and_serve_still_refuse_an_invalid_config(cli: Cli, write_config) -> None:
    write_config(BROKEN)
    for args in (("user", "add", "bob"), ("serve",), ("config", "validate")):
        run = cli(*args)
        assert (run.exit_code, run.stdout) == (1, ""), args
        assert run.stderr.startswith("error: rules.cap.action: unknown action"), args
