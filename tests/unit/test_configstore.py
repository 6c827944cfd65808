"""The config store: K=V scalars, the TOML layout, and writes that validate or do nothing."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest

from waystone_cli.configstore import (
    lock_path,
    parse_assignment,
    parse_scalar,
    render_toml,
    update_config,
    write_config_text,
)
from waystone_cli.core.errors import ConfigError, UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("3", 3),
        ("-2", -2),
        ("1.5", 1.5),
        ("2026-11-01", date(2026, 11, 1)),
        ("2026-11-01T10:00:00Z", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("10:30:00", time(10, 30)),
        ('"3"', "3"),
        ("free", "free"),
        ("hello world", "hello world"),
        ("True", "True"),
        ("[1, 2]", "[1, 2]"),
        ("{ a = 1 }", "{ a = 1 }"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("", ""),
        ("1_000", 1000),
        ("0x10", 16),
    ],
)
def test_parse_scalar(text: str, expected: Any) -> None:
    value = parse_scalar(text)
    assert (type(value), value) == (type(expected), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("tier=free", ("tier", "free")), ("n = 3", ("n", 3)), ("url=a=b", ("url", "a=b"))],
)
def test_parse_assignment(text: str, expected: tuple[str, Any]) -> None:
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["tier", "=free", " =1"])
def test_parse_assignment_misuse(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_assignment(text)
    assert str(caught.value) == f'expected KEY=VALUE, got "{text}"'


DOC: dict[str, Any] = {
    "server": {"port": 8787},
    "users": {
        "alice": {
            "metadata": {"tier": "free", "beta": True, "since": date(2026, 1, 5)},
            "groups": ["acme"],
            "added": datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        },
        "bob@example.com": {"metadata": {"odd key": 'x"y'}},
    },
    "groups": {"acme": {}},
    "prices": {"local/mock-large": {"input": 1.0, "output": 4.0}},
    "rules": {
        "cap": {"action": "block", "usage": {"metric": "requests", "window": "day", "over": 5}}
    },
}


def test_render_layout() -> None:
    assert render_toml(DOC) == (
        "[server]\n"
        "port = 8787\n"
        "\n"
        '[prices."local/mock-large"]\n'
        "input = 1.0\n"
        "output = 4.0\n"
        "\n"
        "[users.alice]\n"
        'metadata = { tier = "free", beta = true, since = 2026-01-05 }\n'
        'groups = ["acme"]\n'
        "added = 2026-11-01T09:30:00Z\n"
        "\n"
        '[users."bob@example.com"]\n'
        'metadata = { "odd key" = "x\\"y" }\n'
        "\n"
        "[groups.acme]\n"
        "\n"
        "[rules.cap]\n"
        'action = "block"\n'
        'usage = { metric = "requests", window = "day", over = 5 }\n'
    )
    assert tomllib.loads(render_toml(DOC)) == DOC


def test_render_falls_back_to_tomli_w_for_what_the_layout_cannot_hold() -> None:
    doc = {"top": 1, "server": {"port": 1}}  # a top-level scalar: not a valid config anyway
    assert tomllib.loads(render_toml(doc)) == doc


def test_update_writes_atomically_and_keeps_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.toml"
    result = update_config(
        path, lambda doc: doc.setdefault("groups", {}).setdefault("acme", {}) or "ok"
    )
    assert result == "ok"
    assert path.read_text() == "[groups.acme]\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml", "config.toml.lock"]
    assert lock_path(path) == path.parent / "config.toml.lock"
    assert path.stat().st_mode & 0o777 == 0o600


def test_update_that_does_not_validate_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "config.toml"
    path.parent.mkdir()
    path.write_text("# hand-written\n[groups.acme]\n")
    path.chmod(0o644)

    def bad(doc: dict[str, Any]) -> None:
        doc["users"] = {"alice": {"groups": ["nope"]}}

    with pytest.raises(ConfigError) as caught:
        update_config(path, bad)
    assert str(caught.value) == 'users.alice.groups[0]: no group named "nope"'
    assert path.read_text() == "# hand-written\n[groups.acme]\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml", "config.toml.lock"]


def test_update_keeps_the_file_mode_and_drops_empty_tables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[groups.acme]\n[server]\nport = 1\n")
    path.chmod(0o640)
    update_config(path, lambda doc: doc["groups"].pop("acme"))
    assert path.read_text() == "[server]\nport = 1\n"
    assert path.stat().st_mode & 0o777 == 0o640


def test_write_config_text_validates_first(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as caught:
        write_config_text(path, "[srever]\n", overwrite=False)
    assert str(caught.value) == 'srever: unknown key (did you mean "server"?)'
    assert not path.exists()


def test_a_symlinked_config_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "waystone.toml"
    real.parent.mkdir()
    real.write_text("[groups.acme]\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    update_config(link, lambda doc: doc["groups"].setdefault("initech", {}))
    assert link.is_symlink()
    assert real.read_text() == "[groups.acme]\n\n[groups.initech]\n"
