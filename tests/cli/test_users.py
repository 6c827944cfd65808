"""``waystone user …``: whole outputs and the TOML they leave behind."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import FROZEN, Cli
from waystone_cli.ledger.connection import open_readwrite

BASE = """\
[groups.acme]
metadata = { region = "eu" }

[groups.globex]
metadata = { region = "us" }

[users.alice]
metadata = { tier = "free", region = "eu" }
groups = ["acme"]

[users.bob]
metadata = { tier = "pro" }
credits = { usd = 25, window = "30d" }
added = 2026-10-01
"""


@pytest.fixture
def base(write_config) -> Path:
    return write_config(BASE)


def test_add_writes_metadata_groups_credits_and_added(cli: Cli, base: Path, read_config) -> None:
    run = cli(
        "user",
        "add",
        "carol",
        "--meta",
        "tier=free",
        "--meta",
        "beta=true",
        "--meta",
        "seats=3",
        "--meta",
        "renews=2026-11-01",
        "--meta",
        "note=hello world",
        "--group",
        "acme",
        "--group",
        "globex",
        "--credits-usd",
        "10",
        "--credits-window",
        "month",
    )
    assert (run.exit_code, run.stdout, run.stderr) == (0, "Added user carol.\n", "")
    assert read_config()["users"]["carol"] == {
        "metadata": {
            "tier": "free",
            "beta": True,
            "seats": 3,
            "renews": date(2026, 11, 1),
            "note": "hello world",
        },
        "groups": ["acme", "globex"],
        "credits": {"usd": 10, "window": "month"},
        "added": FROZEN,
    }


def test_add_to_an_empty_home_creates_the_file(cli: Cli, config_path: Path, read_config) -> None:
    assert cli("user", "add", "alice").exit_code == 0
    assert read_config() == {"users": {"alice": {"added": FROZEN}}}
    assert config_path.read_text() == "[users.alice]\nadded = 2026-11-01T09:30:00Z\n"


def test_list_merges_nothing_when_there_is_no_ledger(cli: Cli, base: Path) -> None:
    run = cli("user", "list")
    assert run.exit_code == 0
    assert run.stdout == (
        "user    groups   metadata               credits   source     first seen\n"
        "─────────────────────────────────────────────────────────────────────────────\n"
        "alice   acme     tier=free, region=eu             declared\n"
        "bob              tier=pro               $25/30d   declared   2026-10-01 00:00\n"
    )


def test_list_json(cli: Cli, base: Path) -> None:
    run = cli("user", "list", "--json")
    assert json.loads(run.stdout) == [
        {
            "id": "alice",
            "metadata": {"tier": "free", "region": "eu"},
            "groups": ["acme"],
            "credits": None,
            "declared": True,
            "seen": False,
            "first_seen": None,
            "last_seen": None,
        },
        {
            "id": "bob",
            "metadata": {"tier": "pro"},
            "groups": [],
            "credits": {"usd": 25.0, "window": "30d"},
            "declared": True,
            "seen": False,
            "first_seen": "2026-10-01T00:00:00+00:00",
            "last_seen": None,
        },
    ]


def _seed_ledger(home: Path) -> None:
    """Traffic saw bob (with metadata that the TOML overrides) and dave, linked to acme."""
    con = open_readwrite(home / "ledger.duckdb")
    con.execute(
        "INSERT INTO users VALUES "
        "('bob', '2026-09-15 08:00:00', '2026-10-30 12:00:00', '{\"tier\": \"free\", \"lang\": \"de\"}'),"
        "('dave', '2026-10-20 10:00:00', '2026-10-31 18:45:00', '{\"tier\": \"free\"}')"
    )
    con.execute(
        "INSERT INTO groups VALUES ('acme', '2026-09-01 00:00:00', '2026-10-31 18:45:00', '{}')"
    )
    con.execute("INSERT INTO links VALUES ('dave', 'acme', '2026-10-20 10:00:00')")
    con.close()


def test_list_shows_users_seen_in_traffic_marked(cli: Cli, base: Path, waystone_home: Path) -> None:
    _seed_ledger(waystone_home)
    rows = {r["id"]: r for r in json.loads(cli("user", "list", "--json").stdout)}
    assert rows["bob"] == {
        "id": "bob",
        "metadata": {"tier": "pro", "lang": "de"},
        "groups": [],
        "credits": {"usd": 25.0, "window": "30d"},
        "declared": True,
        "seen": True,
        "first_seen": "2026-09-15T08:00:00+00:00",
        "last_seen": "2026-10-30T12:00:00+00:00",
    }
    assert rows["dave"] == {
        "id": "dave",
        "metadata": {"tier": "free"},
        "groups": ["acme"],
        "credits": None,
        "declared": False,
        "seen": True,
        "first_seen": "2026-10-20T10:00:00+00:00",
        "last_seen": "2026-10-31T18:45:00+00:00",
    }
    assert list(rows) == ["alice", "bob", "dave"]
    table = cli("user", "list").stdout
    assert table.splitlines()[4] == (
        "dave    acme     tier=free                        seen            2026-10-20 10:00"
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("tier = free", ["alice"]),
        ("user.tier != free", ["bob"]),
        ("region exists", ["alice"]),
        ("not region exists", ["bob"]),
        ("tier = free or tier = pro", ["alice", "bob"]),
        ("always", ["alice", "bob"]),
    ],
)
def test_list_where(cli: Cli, base: Path, where: str, expected: list[str]) -> None:
    run = cli("user", "list", "--where", where, "--json")
    assert run.exit_code == 0, run.stderr
    assert [r["id"] for r in json.loads(run.stdout)] == expected


def test_list_where_joined_within_reads_the_added_date(cli: Cli, write_config) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    recent, old = (now - timedelta(days=10)).date(), (now - timedelta(days=40)).date()
    write_config(f"[users.new]\nadded = {recent}\n[users.old]\nadded = {old}\n[users.undated]\n")
    run = cli("user", "list", "--where", "joined within 30d", "--json")
    assert [r["id"] for r in json.loads(run.stdout)] == ["new"]


def test_list_where_with_a_bad_condition_is_misuse(cli: Cli, base: Path) -> None:
    run = cli("user", "list", "--where", "tier =")
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.startswith("error: --where: ")
    assert len(run.stderr.splitlines()) == 1


def test_show(cli: Cli, base: Path) -> None:
    run = cli("user", "show", "bob")
    assert run.stdout == (
        "user bob\n"
        "  metadata.tier  pro\n"
        "  groups\n"
        "  credits        $25/30d\n"
        "  source         declared\n"
        "  first seen     2026-10-01T00:00:00+00:00\n"
        "  last seen\n"
    )
    assert json.loads(cli("user", "show", "alice", "--json").stdout)["groups"] == ["acme"]


def test_show_a_user_only_seen_in_traffic(cli: Cli, base: Path, waystone_home: Path) -> None:
    _seed_ledger(waystone_home)
    assert json.loads(cli("user", "show", "dave", "--json").stdout) == {
        "id": "dave",
        "metadata": {"tier": "free"},
        "groups": ["acme"],
        "credits": None,
        "declared": False,
        "seen": True,
        "first_seen": "2026-10-20T10:00:00+00:00",
        "last_seen": "2026-10-31T18:45:00+00:00",
    }


def test_show_unknown_user(cli: Cli, base: Path) -> None:
    run = cli("user", "show", "zed")
    assert (run.exit_code, run.stdout, run.stderr) == (1, "", 'error: no user named "zed"\n')


def test_set_and_unset(cli: Cli, base: Path, read_config) -> None:
    assert cli("user", "set", "alice", "tier=pro", "seats=5", "--credits-usd", "7.5").exit_code == 0
    assert read_config()["users"]["alice"] == {
        "metadata": {"tier": "pro", "region": "eu", "seats": 5},
        "groups": ["acme"],
        "credits": {"usd": 7.5, "window": "month"},
    }
    run = cli("user", "unset", "alice", "region", "seats", "tier", "--credits")
    assert (run.exit_code, run.stdout) == (0, "Updated user alice.\n")
    assert read_config()["users"]["alice"] == {"groups": ["acme"]}


def test_set_window_keeps_the_amount(cli: Cli, base: Path, read_config) -> None:
    assert cli("user", "set", "bob", "--credits-window", "week").exit_code == 0
    assert read_config()["users"]["bob"]["credits"] == {"usd": 25, "window": "week"}


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (
            ["user", "add", "alice"],
            1,
            'error: user "alice" already exists (change it with `waystone user set`)\n',
        ),
        (["user", "add", "x", "--meta", "tier"], 2, 'error: expected KEY=VALUE, got "tier"\n'),
        (
            ["user", "add", "x", "--meta", "a b=1"],
            2,
            'error: invalid metadata key "a b" (letters, digits, _ and -)\n',
        ),
        (
            ["user", "add", "x", "--credits-window", "month"],
            2,
            "error: --credits-window needs --credits-usd\n",
        ),
        (
            ["user", "add", "x", "--group", "nope"],
            1,
            'error: users.x.groups[0]: no group named "nope"\n',
        ),
        (
            ["user", "add", "x", "--credits-usd", "5", "--credits-window", "fortnight"],
            1,
            'error: users.x.credits.window: invalid window "fortnight" (day, week, month, '
            "or a rolling duration like 1h, 24h, 7d, 30d)\n",
        ),
        (
            ["user", "set", "zed", "a=1"],
            1,
            'error: no user named "zed" in the config (add it with `waystone user add`)\n',
        ),
        (
            ["user", "set", "alice"],
            2,
            "error: nothing to set: give K=V pairs or --credits-usd/--credits-window\n",
        ),
        (["user", "unset", "alice", "plan"], 1, 'error: user "alice" has no metadata key "plan"\n'),
        (["user", "unset", "alice", "--credits"], 1, 'error: user "alice" has no credits\n'),
        (
            ["user", "rm", "zed"],
            1,
            'error: no user named "zed" in the config (add it with `waystone user add`)\n',
        ),
    ],
)
def test_errors_leave_the_file_alone(
    cli: Cli, base: Path, args: list[str], code: int, stderr: str
) -> None:
    run = cli(*args)
    assert (run.exit_code, run.stdout, run.stderr) == (code, "", stderr)
    assert base.read_text() == BASE


def test_rm(cli: Cli, base: Path, read_config) -> None:
    run = cli("user", "rm", "alice")
    assert (run.exit_code, run.stdout) == (0, "Removed user alice from the config.\n")
    assert list(read_config()["users"]) == ["bob"]
    cli("user", "rm", "bob")
    assert "users" not in read_config()
