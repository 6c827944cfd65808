"""``waystone group …``: entity commands plus link, unlink and members."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import FROZEN, Cli
from waystone_cli.ledger.connection import open_readwrite

BASE = """\
[groups.acme]
metadata = { plan = "enterprise", region = "eu" }
credits = { usd = 500, window = "month" }

[groups.empty]

[users.alice]
groups = ["acme"]
"""


@pytest.fixture
def base(write_config) -> Path:
    return write_config(BASE)


def test_add_list_show(cli: Cli, base: Path, read_config) -> None:
    run = cli("group", "add", "initech", "--meta", "region=us", "--credits-usd", "100")
    assert (run.exit_code, run.stdout) == (0, "Added group initech.\n")
    assert read_config()["groups"]["initech"] == {
        "metadata": {"region": "us"},
        "credits": {"usd": 100, "window": "month"},
        "added": FROZEN,
    }
    assert cli("group", "list").stdout == (
        "group     metadata                     credits      source     first seen\n"
        "───────────────────────────────────────────────────────────────────────────────\n"
        "acme      plan=enterprise, region=eu   $500/month   declared\n"
        "empty                                               declared\n"
        "initech   region=us                    $100/month   declared   2026-11-01 09:30\n"
    )
    assert json.loads(cli("group", "show", "acme", "--json").stdout) == {
        "id": "acme",
        "metadata": {"plan": "enterprise", "region": "eu"},
        "credits": {"usd": 500.0, "window": "month"},
        "declared": True,
        "seen": False,
        "first_seen": None,
        "last_seen": None,
    }


def test_list_where_group_scope(cli: Cli, base: Path) -> None:
    run = cli("group", "list", "--where", "group.region = eu", "--json")
    assert [g["id"] for g in json.loads(run.stdout)] == ["acme"]


def test_add_refuses_group_option(cli: Cli, base: Path) -> None:
    run = cli("group", "add", "x", "--group", "acme")
    assert (run.exit_code, run.stderr) == (2, "error: --group applies to users only\n")


def test_link_declares_missing_users_and_is_idempotent(cli: Cli, base: Path, read_config) -> None:
    run = cli("group", "link", "empty", "alice", "bob", "--create")
    assert (run.exit_code, run.stdout, run.stderr) == (
        0,
        "Linked alice, bob to empty.\n",
        "Declared new users: bob.\n",
    )
    assert cli("group", "link", "empty", "alice").exit_code == 0
    assert read_config()["users"] == {
        "alice": {"groups": ["acme", "empty"]},
        "bob": {"added": FROZEN, "groups": ["empty"]},
    }


def test_link_refuses_an_id_neither_declared_nor_seen(
    cli: Cli, base: Path, waystone_home: Path, read_config
) -> None:
    run = cli("group", "link", "empty", "alice", "bbo")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        'error: no user "bbo" in the config or seen in traffic '
        "(check the id, or pass --create to declare a new user)\n",
    )
    assert base.read_text() == BASE
    con = open_readwrite(waystone_home / "ledger.duckdb")
    con.execute("INSERT INTO users VALUES ('bob', '2026-10-01', '2026-10-02', '{}')")
    con.close()
    seen = cli("group", "link", "empty", "bob")
    assert (seen.exit_code, seen.stderr) == (0, "Declared new users: bob.\n")
    assert read_config()["users"]["bob"] == {"added": FROZEN, "groups": ["empty"]}


def test_link_to_an_undeclared_group(cli: Cli, base: Path) -> None:
    run = cli("group", "link", "nope", "alice")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: no group named "nope" in the config (add it with `waystone group add`)\n',
    )


def test_unlink(cli: Cli, base: Path, read_config) -> None:
    run = cli("group", "unlink", "acme", "alice")
    assert (run.exit_code, run.stdout) == (0, "Unlinked alice from acme.\n")
    assert read_config()["users"] == {"alice": {}}
    again = cli("group", "unlink", "acme", "alice")
    assert (again.exit_code, again.stderr) == (
        1,
        'error: user "alice" is not a member of "acme" in the config\n',
    )


def test_rm_is_refused_while_users_are_members(cli: Cli, base: Path, read_config) -> None:
    run = cli("group", "rm", "acme")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: group "acme" still has members in the config: alice '
        "(unlink them with `waystone group unlink acme USER...`)\n",
    )
    assert base.read_text() == BASE
    assert cli("group", "rm", "empty").exit_code == 0
    assert list(read_config()["groups"]) == ["acme"]


def test_members_declared_and_seen(cli: Cli, base: Path, waystone_home: Path) -> None:
    con = open_readwrite(waystone_home / "ledger.duckdb")
    con.execute(
        "INSERT INTO users VALUES ('alice', '2026-10-01', '2026-10-02', '{}'),"
        "('zoe', '2026-10-01', '2026-10-02', '{}')"
    )
    con.execute("INSERT INTO groups VALUES ('acme', '2026-10-01', '2026-10-02', '{}')")
    con.execute(
        "INSERT INTO links VALUES ('alice', 'acme', '2026-10-01'), ('zoe', 'acme', '2026-10-01')"
    )
    con.close()
    assert cli("group", "members", "acme").stdout == (
        "user    source\n─────────────────────\nalice   declared+seen\nzoe     seen\n"
    )
    assert json.loads(cli("group", "members", "acme", "--json").stdout) == [
        {"id": "alice", "declared": True, "seen": True},
        {"id": "zoe", "declared": False, "seen": True},
    ]


def test_members_of_unknown_group(cli: Cli, base: Path) -> None:
    run = cli("group", "members", "nope")
    assert (run.exit_code, run.stderr) == (1, 'error: no group named "nope"\n')
