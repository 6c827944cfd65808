"""``waystone init`` and ``waystone config path|show|validate``."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from tests.cli.conftest import Cli
from waystone_cli.commands.init import STARTER


def test_init_writes_the_starter_and_refuses_to_overwrite(cli: Cli, config_path: Path) -> None:
    run = cli("init")
    assert (run.exit_code, run.stdout) == (0, f"Wrote a starter config to {config_path}\n")
    assert config_path.read_text() == STARTER
    assert config_path.stat().st_mode & 0o777 == 0o600
    config_path.write_text("[users.keep]\n")
    again = cli("init")
    assert (again.exit_code, again.stderr) == (
        2,
        f"error: {config_path} already exists (use --force to overwrite it)\n",
    )
    assert config_path.read_text() == "[users.keep]\n"
    assert cli("init", "--force").exit_code == 0
    assert config_path.read_text() == STARTER


def test_init_honours_config_option(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "waystone.toml"
    assert cli("--config", str(target), "init").exit_code == 0
    assert tomllib.loads(target.read_text())["providers"] == {
        "local": {"kind": "mock", "models": ["mock-small", "mock-large"]}
    }


def test_config_path(cli: Cli, config_path: Path, tmp_path: Path, monkeypatch) -> None:
    assert cli("config", "path").stdout == f"{config_path}\n"
    monkeypatch.setenv("WAYSTONE_CONFIG", str(tmp_path / "env.toml"))
    assert cli("config", "path").stdout == f"{tmp_path / 'env.toml'}\n"
    assert cli("--config", "/x/y.toml", "config", "path").stdout == "/x/y.toml\n"


def test_config_validate(cli: Cli, write_config, config_path: Path) -> None:
    cli("init")
    assert cli("config", "validate").stdout == (
        f"{config_path}: valid (1 provider, 0 users, 0 groups, 0 rules, 0 rulesets, 0 keys)\n"
    )
    write_config(
        '[rulesets.free-tier]\nwhen = "always"\nrules = ["downgrade", "cap-10"]\n'
        '[rules.downgrade]\naction = "capture"\n'
    )
    run = cli("config", "validate")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        'error: rulesets.free-tier.rules[1]: no rule named "cap-10" (line 3)\n',
    )


def test_config_validate_without_a_file(cli: Cli, config_path: Path) -> None:
    run = cli("config", "validate")
    assert (run.exit_code, run.stderr) == (
        1,
        f"error: no config file at {config_path} (create one with `waystone init`)\n",
    )


def test_config_validate_bad_toml(cli: Cli, write_config, config_path: Path) -> None:
    write_config("[users.alice\n")
    run = cli("config", "validate")
    assert run.exit_code == 1
    assert run.stderr == (
        f"error: {config_path}: invalid TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 13)\n"
    )


def test_config_show(cli: Cli, write_config) -> None:
    text = '# mine\n[users.alice]\nmetadata = { tier = "free" }\n'
    write_config(text)
    assert cli("config", "show").stdout == text
    assert json.loads(cli("config", "show", "--json").stdout) == {
        "users": {"alice": {"metadata": {"tier": "free"}}}
    }


def test_sample_config_validates(cli: Cli) -> None:
    sample = Path(__file__).resolve().parents[2] / "sample-config.toml"
    run = cli("--config", str(sample), "config", "validate")
    assert run.stdout == (
        f"{sample}: valid (3 providers, 3 users, 2 groups, 13 rules, 5 rulesets, 0 keys)\n"
    )


def test_config_validate_reports_invalid_utf8_in_one_line(cli: Cli, config_path: Path) -> None:
    config_path.write_bytes(b"[users.caf\xe9]\n")
    run = cli("config", "validate")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        f"error: {config_path}: not valid UTF-8 (byte 0xe9 at offset 10)\n",
    )


def test_validate_refuses_a_rule_target_no_provider_serves(cli: Cli, write_config) -> None:
    write_config(
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\nmodels = ["gpt-4o"]\n\n'
        '[rules.eu]\naction = "change_model"\nto = "gpt-9"\n'
    )
    run = cli("config", "validate")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: rules.eu.to: no provider serves "gpt-9" (line 7)\n',
    )


def test_validate_refuses_an_unserved_fallback_and_moderation(cli: Cli, write_config) -> None:
    providers = '[providers.openai]\nbase_url = "https://api.openai.com/v1"\nmodels = ["gpt-4o"]\n'
    write_config(providers + '[rules.b]\naction = "fallback"\nto = "openai/o3"\n')
    assert cli("config", "validate").stderr == (
        'error: rules.b.to: model "o3" is not served by provider "openai" (its models: gpt-4o) (line 6)\n'
    )
    write_config(providers + '[rules.m]\naction = "check_output"\nmoderation = "omni"\n')
    assert cli("config", "validate").stderr == (
        'error: rules.m.moderation: no provider serves "omni" (line 6)\n'
    )


def test_validate_accepts_a_target_a_catch_all_provider_serves(cli: Cli, write_config) -> None:
    write_config(
        '[providers.any]\nbase_url = "https://openrouter.example/v1"\n\n'
        '[rules.eu]\naction = "change_model"\nto = "gpt-9"\n'
    )
    assert cli("config", "validate").exit_code == 0


def test_the_sample_config_validates(cli: Cli, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    monkeypatch.setenv("OPENAI_EU_API_KEY", "sk-2")
    sample = Path(__file__).parents[2] / "sample-config.toml"
    run = cli("--config", str(sample), "config", "validate")
    assert (run.exit_code, run.stderr) == (0, "")


def test_validate_warns_about_an_unset_provider_key_variable(
    cli: Cli, write_config, config_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_config(
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\n'
        'api_key = "env:OPENAI_API_KEY"\nmodels = ["gpt-4o"]\n'
    )
    run = cli("config", "validate")
    assert (run.exit_code, run.stdout, run.stderr) == (
        0,
        f"{config_path}: valid (1 provider, 0 users, 0 groups, 0 rules, 0 rulesets, 0 keys)\n",
        "warning: providers.openai.api_key: environment variable OPENAI_API_KEY is not set "
        '(calls to provider "openai" will fail)\n',
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-set")
    assert cli("config", "validate").stderr == ""


def test_a_schema_error_names_the_line_and_suggests_the_known_key(cli: Cli, write_config) -> None:
    write_config(
        "# the team's gateway\n[server]\nport = 8787\n\n"
        '[users."bob@example.com"]\nmetadta = { tier = "free" }\n'
    )
    run = cli("config", "validate")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: users."bob@example.com".metadta: unknown key (did you mean "metadata"?) (line 6)\n',
    )


def test_validate_refuses_a_target_two_providers_serve(cli: Cli, write_config) -> None:
    write_config(
        '[providers.a]\nkind = "mock"\nmodels = ["m"]\n\n'
        '[providers.b]\nkind = "mock"\nmodels = ["m"]\n\n'
        '[rules.r]\naction = "fallback"\nto = "m"\n'
    )
    assert cli("config", "validate").stderr == (
        'error: rules.r.to: model "m" is served by several providers; '
        "name one of: a/m, b/m (line 11)\n"
    )
