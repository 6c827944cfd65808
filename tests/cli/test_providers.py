"""``waystone provider add|list|rm``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli


def test_add_list_rm(cli: Cli, read_config) -> None:
    run = cli(
        "provider",
        "add",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-key-env",
        "OPENAI_API_KEY",
        "--model",
        "gpt-4o",
        "--model",
        "o3",
    )
    assert (run.exit_code, run.stdout) == (0, "Added provider openai.\n")
    assert cli("provider", "add", "local", "--kind", "mock", "--model", "mock-small").exit_code == 0
    assert read_config() == {
        "providers": {
            "openai": {
                "base_url": "https://api.openai.com/v1",
                "api_key": "env:OPENAI_API_KEY",
                "models": ["gpt-4o", "o3"],
            },
            "local": {"kind": "mock", "models": ["mock-small"]},
        }
    }
    assert cli("provider", "list").stdout == (
        "provider   kind     base url                    api key              models\n"
        "───────────────────────────────────────────────────────────────────────────────\n"
        "openai     openai   https://api.openai.com/v1   env:OPENAI_API_KEY   gpt-4o, o3\n"
        "local      mock                                                      mock-small\n"
    )
    assert cli("provider", "rm", "local").stdout == "Removed provider local.\n"
    assert list(read_config()["providers"]) == ["openai"]


def test_list_never_prints_a_literal_key(cli: Cli, write_config) -> None:
    write_config('[providers.x]\nbase_url = "http://127.0.0.1:9"\napi_key = "sk-secret"\n')
    run = cli("provider", "list", "--json")
    assert json.loads(run.stdout) == [
        {
            "name": "x",
            "kind": "openai",
            "base_url": "http://127.0.0.1:9",
            "api_key": "(literal key, hidden)",
            "models": [],
        }
    ]
    assert "sk-secret" not in cli("provider", "list").stdout


def test_add_openai_without_base_url_is_refused(cli: Cli, config_path: Path) -> None:
    run = cli("provider", "add", "openai")
    assert (run.exit_code, run.stderr) == (1, "error: providers.openai: base_url is required\n")
    assert not config_path.exists()


def test_add_unknown_kind(cli: Cli) -> None:
    run = cli("provider", "add", "p", "--kind", "vllm")
    assert (run.exit_code, run.stderr) == (
        1,
        "error: providers.p.kind: must be one of openai, mock, anthropic\n",
    )


def test_add_an_anthropic_provider(cli: Cli, read_config) -> None:
    run = cli(
        "provider",
        "add",
        "claude",
        "--kind",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key-env",
        "ANTHROPIC_API_KEY",
        "--model",
        "claude-sonnet-4-5",
    )
    assert (run.exit_code, run.stdout) == (0, "Added provider claude.\n")
    assert read_config() == {
        "providers": {
            "claude": {
                "kind": "anthropic",
                "base_url": "https://api.anthropic.com",
                "api_key": "env:ANTHROPIC_API_KEY",
                "models": ["claude-sonnet-4-5"],
            }
        }
    }
    refused = cli("provider", "add", "bare", "--kind", "anthropic")
    assert (refused.exit_code, refused.stderr) == (
        1,
        "error: providers.bare: base_url is required\n",
    )


def test_rm_refused_while_a_rule_routes_to_it(cli: Cli, write_config) -> None:
    text = (
        '[providers.eu]\nbase_url = "https://eu.example/v1"\n\n'
        '[rules.route]\naction = "change_model"\nto = "eu/gpt-4o"\n'
    )
    write_config(text)
    run = cli("provider", "rm", "eu")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: provider "eu" is used by rule "route" (to = "eu/gpt-4o")\n',
    )
    missing = cli("provider", "rm", "nope")
    assert (missing.exit_code, missing.stderr) == (1, 'error: no provider named "nope"\n')


TWO_PROVIDERS = (
    '[providers.openai]\nbase_url = "https://api.openai.com/v1"\nmodels = ["gpt-4o", "o3"]\n\n'
    '[providers.eu]\nbase_url = "https://eu.example/v1"\nmodels = ["gpt-4o-mini", "omni"]\n\n'
    '[rules.route-eu]\naction = "change_model"\nto = "gpt-4o-mini"\n\n'
    '[rules.backup]\naction = "fallback"\nto = "o3"\n\n'
    '[rules.moderate]\naction = "check_output"\nmoderation = "omni"\n'
)


def test_rm_refused_while_a_bare_target_is_served_only_by_it(
    cli: Cli, write_config, config_path: Path
) -> None:
    write_config(TWO_PROVIDERS)
    run = cli("provider", "rm", "eu")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: provider "eu" is used by rule "route-eu" (to = "gpt-4o-mini"), '
        'rule "moderate" (moderation = "omni")\n',
    )
    assert config_path.read_text() == TWO_PROVIDERS


def test_rm_model_refused_while_a_fallback_needs_it(
    cli: Cli, write_config, config_path: Path
) -> None:
    write_config(TWO_PROVIDERS)
    run = cli("provider", "set", "openai", "--rm-model", "o3")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: model "o3" of provider "openai" is used by rule "backup" (to = "o3")\n',
    )
    assert config_path.read_text() == TWO_PROVIDERS
    last = cli("provider", "set", "eu", "--rm-model", "gpt-4o-mini", "--rm-model", "omni")
    assert (last.exit_code, last.stderr) == (
        1,
        'error: provider "eu" would have no models left (an empty list serves any model)\n',
    )


def test_set_changes_url_key_and_models_in_place(cli: Cli, write_config, config_path) -> None:
    write_config(TWO_PROVIDERS)
    run = cli(
        "provider", "set", "openai", "--base-url", "https://proxy.example/v1",
        "--api-key-env", "OPENAI_KEY", "--add-model", "o3-mini", "--rm-model", "gpt-4o",
    )  # fmt: skip
    assert (run.exit_code, run.stdout, run.stderr) == (0, "Updated provider openai.\n", "")
    assert config_path.read_text() == TWO_PROVIDERS.replace(
        'base_url = "https://api.openai.com/v1"\nmodels = ["gpt-4o", "o3"]\n',
        'base_url = "https://proxy.example/v1"\nmodels = ["o3", "o3-mini"]\n'
        'api_key = "env:OPENAI_KEY"\n',
    )


def test_set_misuse(cli: Cli, write_config) -> None:
    write_config(TWO_PROVIDERS)
    assert cli("provider", "set", "openai").stderr == (
        "error: nothing to set: give --base-url, --api-key-env, --add-model or --rm-model\n"
    )
    assert cli("provider", "set", "nope", "--add-model", "x").stderr == (
        'error: no provider named "nope"\n'
    )
    assert cli("provider", "set", "eu", "--rm-model", "gpt-9").stderr == (
        'error: provider "eu" does not list model "gpt-9"\n'
    )
    bad_url = cli("provider", "set", "eu", "--base-url", "ftp://x")
    assert bad_url.exit_code == 1 and bad_url.stderr.startswith("error: providers.eu.base_url")
