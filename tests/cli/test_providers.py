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
        "error: providers.p.kind: must be one of openai, mock\n",
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
