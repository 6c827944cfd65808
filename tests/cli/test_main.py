"""The root: error translation, exit codes, --debug, help for every command."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Cli
from waystone_cli.main import COMMAND_MODULES, build_app, command_name


def _boom(*args: object) -> str:
    raise RuntimeError("boom")


def test_unexpected_error_is_one_line_without_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("init")
    monkeypatch.setattr("waystone_cli.commands.config.summary", _boom)
    run = cli("config", "validate")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        "error: RuntimeError: boom (run with --debug for the traceback)\n",
    )


def test_a_multi_line_message_prints_as_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> str:
        raise ValueError("first line\n  second line\n")

    cli("init")
    monkeypatch.setattr("waystone_cli.commands.config.summary", boom)
    run = cli("config", "validate")
    assert run.stderr == (
        "error: ValueError: first line second line (run with --debug for the traceback)\n"
    )


def test_debug_shows_the_traceback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("init")
    monkeypatch.setattr("waystone_cli.commands.config.summary", _boom)
    run = cli("--debug", "config", "validate")
    assert run.exit_code == 1
    assert run.stderr.startswith("Traceback (most recent call last):\n")
    assert 'in _boom\n    raise RuntimeError("boom")\nRuntimeError: boom\n' in run.stderr
    assert run.stderr.endswith("\nerror: RuntimeError: boom\n")


def test_waystone_error_with_debug_keeps_the_message_last(cli: Cli) -> None:
    run = cli("--debug", "user", "show", "nobody")
    assert run.exit_code == 1
    assert run.stderr.startswith("Traceback (most recent call last):\n")
    assert run.stderr.endswith('\nerror: no user named "nobody"\n')


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["user", "add"], "error: Missing argument 'ID'. (see 'waystone user add --help')\n"),
        (
            ["user", "add", "a", "--bogus"],
            "error: No such option '--bogus'. (see 'waystone user add --help')\n",
        ),
        (["nope"], "error: No such command 'nope'. (see 'waystone --help')\n"),
        (
            ["user", "add", "a", "--credits-usd", "lots"],
            "error: Invalid value for '--credits-usd': 'lots' is not a valid float. "
            "(see 'waystone user add --help')\n",
        ),
    ],
)
def test_usage_errors_exit_2_on_one_line(cli: Cli, args: list[str], stderr: str) -> None:
    run = cli(*args)
    assert (run.exit_code, run.stdout, run.stderr) == (2, "", stderr)


def test_bare_command_prints_help(cli: Cli) -> None:
    run = cli()
    assert run.exit_code == 0
    assert "Usage: waystone [OPTIONS] COMMAND [ARGS]..." in run.stdout
    group = cli("user")
    assert group.exit_code == 0
    assert "Usage: waystone user [OPTIONS] COMMAND [ARGS]..." in group.stdout


def test_help_exits_0(cli: Cli) -> None:
    run = cli("user", "add", "--help")
    assert run.exit_code == 0
    assert "Declare a user in the config." in run.stdout


def _walk(command, path):  # type: ignore[no-untyped-def]
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def test_every_command_and_group_has_help() -> None:
    import typer

    root = typer.main.get_command(build_app())
    missing = [
        " ".join(path) for path, cmd in _walk(root, ("waystone",)) if not (cmd.help or "").strip()
    ]
    assert missing == []


def test_the_admin_commands_are_all_there() -> None:
    import typer

    root = typer.main.get_command(build_app())
    names = {" ".join(path[1:]) for path, _ in _walk(root, ("waystone",))}
    expected = {
        "init",
        "config path",
        "config show",
        "config validate",
        *(f"user {c}" for c in ("add", "list", "show", "set", "unset", "rm")),
        *(
            f"group {c}"
            for c in ("add", "list", "show", "set", "unset", "rm", "link", "unlink", "members")
        ),
        "provider add",
        "provider list",
        "provider rm",
        "rule add",
        "rule list",
        "rule show",
        "rule rm",
        *(f"ruleset {c}" for c in ("add", "list", "show", "rm", "enable", "disable")),
        "key create",
        "key list",
        "key revoke",
    }
    assert expected - names == set()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["--help"], None),
        (["user", "list"], "user"),
        (["--config", "user", "group", "list"], "group"),
        (["--config=/x.toml", "--debug", "key", "list"], "key"),
        (["-h", "rule"], "rule"),
    ],
)
def test_command_name(args: list[str], expected: str | None) -> None:
    assert command_name(args) == expected


def test_every_top_level_command_is_mapped_to_the_module_that_registers_it() -> None:
    import typer

    everything = typer.main.get_command(build_app())
    names = set(everything.commands)  # type: ignore[attr-defined]
    assert names - set(COMMAND_MODULES) == set()
    for name in sorted(names):
        alone = typer.main.get_command(build_app(name))
        assert name in alone.commands  # type: ignore[attr-defined]
