"""Control characters in user data (ids, metadata) never reach the operator's terminal:
every way the CLI prints shows them as visible escapes (``\\x1b``), so a metadata value
cannot retitle the terminal, recolour it or move the cursor."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli

# An OSC title change, a colour, a cursor move, a bell and a C1 CSI, as TOML escapes.
HOSTILE = r"\u001b]0;pwned\u0007\u001b[31mred\u001b[2J\u009b1m"
SHOWN = r"\x1b]0;pwned\x07\x1b[31mred\x1b[2J\x9b1m"

CONFIG = f"""\
[providers.local]
kind = "mock"
models = ["mock-small"]

[groups.acme]
metadata = {{ note = "{HOSTILE}" }}

[users.alice]
metadata = {{ note = "{HOSTILE}" }}
groups = ["acme"]
"""

CONTROL = {chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


@pytest.fixture
def config(write_config) -> Path:
    return write_config(CONFIG)


@pytest.mark.parametrize(
    "args",
    [
        ("user", "list"),
        ("user", "show", "alice"),
        ("group", "show", "acme"),
        ("group", "list"),
        ("user", "list", "--json"),
    ],
)
def test_metadata_escape_codes_are_printed_as_visible_escapes(
    cli: Cli, config: Path, args: tuple[str, ...]
) -> None:
    run = cli(*args)
    assert run.exit_code == 0
    assert not CONTROL & set(run.stdout)
    if "--json" not in args:
        assert SHOWN in run.stdout


def test_an_error_naming_a_hostile_id_is_escaped_too(cli: Cli, config: Path) -> None:
    run = cli("user", "show", "\x1b[2Jzed")
    assert (run.exit_code, run.stderr) == (1, 'error: no user named "\\x1b[2Jzed"\n')


def test_rules_explain_escapes_the_id_it_explains(cli: Cli, config: Path) -> None:
    run = cli("rules", "explain", "--user", "\x1b]0;pwned\x07zed", "--model", "mock-small")
    assert run.exit_code == 0
    assert not CONTROL & set(run.stdout)
    assert run.stdout.startswith("A request from user \\x1b]0;pwned\\x07zed for local/mock-small")
