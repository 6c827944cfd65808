"""The two traps ``sample-config.toml`` had: ``route-eu`` turned ``gpt-4o-mini`` into
``gpt-4o`` (16x the price) for EU groups, and two providers listing ``gpt-4o-mini`` made
the README's bare ``gpt-4o-mini`` ambiguous."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Cli

SAMPLE = Path(__file__).resolve().parents[2] / "sample-config.toml"


@pytest.mark.parametrize(
    ("who", "model", "used"),
    [
        (("--user", "bob"), "gpt-4o-mini", "openai/gpt-4o-mini"),
        (("--user", "alice", "--group", "acme"), "gpt-4o-mini", "openai-eu/gpt-4o-mini"),
        (("--user", "alice", "--group", "acme"), "gpt-4o", "openai-eu/gpt-4o"),
    ],
)
def test_eu_routing_keeps_the_model_and_bare_names_are_not_ambiguous(
    cli: Cli, waystone_home: Path, who: tuple[str, ...], model: str, used: str
) -> None:
    run = cli("--config", str(SAMPLE), "rules", "explain", *who, "--model", model, "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["model_used"] == used
