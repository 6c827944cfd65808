"""The root's small promises: one suggestion, --version, completion, honest help."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli


def test_an_unknown_command_suggests_once(cli: Cli) -> None:
    run = cli("uzer")  # "usr" is as near to "cluster" as to "user"
    assert (run.exit_code, run.stderr) == (
        2,
        "error: No such command 'uzer'. Did you mean 'user'? (see 'waystone --help')\n",
    )
    sub = cli("user", "ad")
    assert sub.stderr == (
        "error: No such command 'ad'. Did you mean 'add'? (see 'waystone user --help')\n"
    )


def test_version(cli: Cli) -> None:
    assert cli("--version") == cli("--version")
    run = cli("--version")
    assert (run.exit_code, run.stdout, run.stderr) == (0, "waystone 0.1.0\n", "")


def test_shell_completion_script(cli: Cli, monkeypatch) -> None:
    # Typer detects the shell it runs in; the test's shell is whatever runs pytest.
    monkeypatch.setattr("typer.completion._get_shell_name", lambda: "bash")
    run = cli("--show-completion")
    assert run.exit_code == 0
    assert "_waystone_completion()" in run.stdout
    assert "complete -o default -F _waystone_completion waystone" in run.stdout


def test_group_add_help_does_not_offer_group(cli: Cli) -> None:
    assert "--group" not in cli("group", "add", "--help").stdout
    assert "--group" in cli("user", "add", "--help").stdout


def test_help_explains_the_singular_and_plural_commands(cli: Cli) -> None:
    def flat(*args: str) -> str:
        return " ".join(cli(*args).stdout.replace("│", " ").split())

    assert "`waystone rules explain` shows how they apply" in flat("rule", "--help")
    assert "`waystone rule` manages the rules" in flat("rules", "--help")
    usage = flat("usage", "--help")
    assert "(one: `usage dataset NAME`)" in usage
    assert "(all: `datasets`)" in usage
    assert "rows from before the rule never expire" in usage


def test_a_string_that_reads_as_another_type_is_quoted_in_tables(cli: Cli, write_config) -> None:
    write_config(
        '[users.alice]\nmetadata = { beta = "false", vip = false, n = "3", tier = "free" }\n'
    )
    run = cli("user", "show", "alice")
    assert (run.exit_code, run.stdout) == (
        0,
        "user alice\n"
        '  metadata.beta  "false"\n'
        "  metadata.vip   false\n"
        '  metadata.n     "3"\n'
        "  metadata.tier  free\n"
        "  groups\n  credits\n  source         declared\n  first seen\n  last seen\n",
    )
    listed = cli("user", "list")
    assert 'beta="false", vip=false, n="3", tier=free' in listed.stdout


def test_config_path_all_prints_where_state_lives(
    cli: Cli, waystone_home: Path, monkeypatch
) -> None:
    run = cli("config", "path", "--all")
    assert (run.exit_code, run.stdout) == (
        0,
        f"home    {waystone_home} (WAYSTONE_HOME)\n"
        f"config  {waystone_home / 'config.toml'}\n"
        f"ledger  {waystone_home / 'ledger.duckdb'}\n"
        f"socket  {waystone_home / 'admin.sock'}\n"
        f"lock    {waystone_home / 'config.toml.lock'}\n",
    )


def test_config_path_all_names_a_postgres_ledger_without_its_password(
    cli: Cli, waystone_home: Path
) -> None:
    (waystone_home / "config.toml").write_text(
        '[ledger]\nurl = "postgresql://me:secret@db.internal:5432/waystone"\n'
    )
    run = cli("config", "path", "--all")
    assert run.exit_code == 0
    assert "ledger  postgres postgresql://me:***@db.internal:5432/waystone\n" in run.stdout
    assert "secret" not in run.stdout
