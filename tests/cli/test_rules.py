"""``waystone rule …`` and ``waystone ruleset …``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Cli

BASE = """\
[providers.openai]
base_url = "https://api.openai.com/v1"
models = ["o3", "o3-mini", "gpt-4o"]

[rules.downgrade-o3]
model = "o3"
action = "change_model"
to = "o3-mini"

[rulesets.free-tier]
when = "user.tier = free"
rules = ["downgrade-o3"]
"""


@pytest.fixture
def base(write_config) -> Path:
    return write_config(BASE)


def test_rule_add_with_dotted_set(cli: Cli, base: Path, read_config) -> None:
    run = cli(
        "rule",
        "add",
        "cap-10-usd",
        "--action",
        "block",
        "--set",
        "usage.metric=cost_usd",
        "--set",
        "usage.window=30d",
        "--set",
        "usage.over=10",
        "--set",
        "message=Budget reached",
    )
    assert (run.exit_code, run.stdout, run.stderr) == (0, "Added rule cap-10-usd.\n", "")
    assert read_config()["rules"]["cap-10-usd"] == {
        "action": "block",
        "usage": {"metric": "cost_usd", "window": "30d", "over": 10},
        "message": "Budget reached",
    }


def test_rule_list_and_show(cli: Cli, base: Path) -> None:
    cli("rule", "add", "keep", "--action", "retain", "--set", "days=60")
    assert cli("rule", "list").stdout == (
        "rule           trigger    action                    used by\n"
        "─────────────────────────────────────────────────────────────\n"
        "downgrade-o3   model o3   change_model to=o3-mini   free-tier\n"
        "keep           always     retain days=60\n"
    )
    assert cli("rule", "show", "downgrade-o3").stdout == (
        "rule downgrade-o3\n"
        "  model    o3\n"
        "  action   change_model\n"
        "  to       o3-mini\n"
        "  used by  free-tier\n"
    )
    assert json.loads(cli("rule", "list", "--json").stdout) == [
        {
            "name": "downgrade-o3",
            "config": {"model": "o3", "action": "change_model", "to": "o3-mini"},
            "used_by": ["free-tier"],
        },
        {"name": "keep", "config": {"action": "retain", "days": 60}, "used_by": []},
    ]


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (
            ["rule", "add", "x", "--action", "explode"],
            1,
            'error: rules.x.action: unknown action "explode" (one of block, change_model, fallback, '
            "limit_tokens, check_output, dataset, retain, capture, flag)\n",
        ),
        (
            ["rule", "add", "x", "--action", "retain"],
            1,
            'error: rules.x: action "retain" needs days\n',
        ),
        (
            ["rule", "add", "x", "--action", "block", "--set", "to=o3"],
            1,
            'error: rules.x.to: not a field of action "block"\n',
        ),
        (
            ["rule", "add", "x", "--action", "block", "--set", "usage.over=1", "--set", "usage=2"],
            2,
            'error: --set usage: "usage" is already a table\n',
        ),
        (
            ["rule", "add", "x", "--action", "block", "--set", "action=retain"],
            2,
            "error: --set action: use --action instead\n",
        ),
        (
            ["rule", "add", "downgrade-o3", "--action", "block"],
            1,
            'error: rule "downgrade-o3" already exists (remove it first to redefine it)\n',
        ),
        (
            ["rule", "rm", "downgrade-o3"],
            1,
            'error: rule "downgrade-o3" is used by ruleset free-tier (remove it there first)\n',
        ),
        (["rule", "show", "nope"], 1, 'error: no rule named "nope"\n'),
        (["ruleset", "add", "x", "--when", "tier ==", "--rule", "downgrade-o3"], 1, None),
        (
            ["ruleset", "add", "x", "--when", "always", "--rule", "nope"],
            1,
            'error: rulesets.x.rules[0]: no rule named "nope"\n',
        ),
        (["ruleset", "add", "x", "--when", "always"], 2, None),
        (["ruleset", "enable", "nope"], 1, 'error: no ruleset named "nope"\n'),
    ],
)
def test_errors_leave_the_file_alone(
    cli: Cli, base: Path, args: list[str], code: int, stderr: str | None
) -> None:
    run = cli(*args)
    assert (run.exit_code, run.stdout) == (code, "")
    if stderr is not None:
        assert run.stderr == stderr
    assert len(run.stderr.splitlines()) == 1
    assert base.read_text() == BASE


def test_ruleset_add_list_disable_enable_rm(cli: Cli, base: Path, read_config) -> None:
    run = cli(
        "ruleset",
        "add",
        "eu",
        "--when",
        "group.region = eu",
        "--rule",
        "downgrade-o3",
        "--priority",
        "10",
    )
    assert (run.exit_code, run.stdout) == (0, "Added ruleset eu.\n")
    assert cli("ruleset", "disable", "eu").stdout == "Disabled ruleset eu.\n"
    assert read_config()["rulesets"]["eu"] == {
        "when": "group.region = eu",
        "rules": ["downgrade-o3"],
        "priority": 10,
        "enabled": False,
    }
    assert cli("ruleset", "list").stdout == (
        "ruleset     when                rules          priority   enabled\n"
        "─────────────────────────────────────────────────────────────────\n"
        "free-tier   user.tier = free    downgrade-o3   0          yes\n"
        "eu          group.region = eu   downgrade-o3   10         no\n"
    )
    cli("ruleset", "enable", "eu")
    assert "enabled" not in read_config()["rulesets"]["eu"]
    assert json.loads(cli("ruleset", "show", "eu", "--json").stdout) == {
        "name": "eu",
        "when": "group.region = eu",
        "rules": ["downgrade-o3"],
        "priority": 10,
        "enabled": True,
    }
    assert cli("ruleset", "show", "free-tier").stdout == (
        "ruleset free-tier\n"
        "  when      user.tier = free\n"
        "  rules     downgrade-o3\n"
        "  priority  0\n"
        "  enabled   yes\n"
    )
    assert cli("ruleset", "rm", "free-tier").stdout == "Removed ruleset free-tier.\n"
    assert cli("rule", "rm", "downgrade-o3").exit_code == 1  # eu still uses it
    cli("ruleset", "rm", "eu")
    assert cli("rule", "rm", "downgrade-o3").exit_code == 0
    assert read_config() == {
        "providers": {
            "openai": {
                "base_url": "https://api.openai.com/v1",
                "models": ["o3", "o3-mini", "gpt-4o"],
            }
        }
    }


def test_rule_set_changes_fields_in_place(cli: Cli, write_config, config_path: Path) -> None:
    write_config(
        BASE + '\n# five a minute for now\n[rules.slow]\naction = "block"\nrate = { rpm = 5 }\n'
    )
    run = cli("rule", "set", "slow", "rate.rpm=100", "message=Slow down")
    assert (run.exit_code, run.stdout, run.stderr) == (0, "Updated rule slow.\n", "")
    assert config_path.read_text().endswith(
        '# five a minute for now\n[rules.slow]\naction = "block"\nrate = { rpm = 100 }\n'
        'message = "Slow down"\n'
    )
    bad = cli("rule", "set", "slow", "rate.rpm=0")
    assert (bad.exit_code, bad.stderr) == (1, "error: rules.slow.rate.rpm: must be positive\n")
    assert cli("rule", "set", "nope", "days=3").stderr == 'error: no rule named "nope"\n'


def test_rule_set_to_an_unserved_model_is_refused(cli: Cli, base: Path) -> None:
    run = cli("rule", "set", "downgrade-o3", "to=o4-mini")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: rules.downgrade-o3.to: no provider serves "o4-mini"\n',
    )


def test_rule_rename_updates_the_rulesets(cli: Cli, base: Path, read_config) -> None:
    run = cli("rule", "rename", "downgrade-o3", "o3-to-mini")
    assert (run.exit_code, run.stdout) == (
        0,
        "Renamed rule downgrade-o3 to o3-to-mini in free-tier.\n",
    )
    config = read_config()
    assert list(config["rules"]) == ["o3-to-mini"]
    assert config["rulesets"]["free-tier"]["rules"] == ["o3-to-mini"]
    clash = cli("rule", "rename", "o3-to-mini", "o3-to-mini")
    assert clash.stderr == 'error: rule "o3-to-mini" already exists\n'


def test_ruleset_set_changes_condition_priority_and_rules(
    cli: Cli, base: Path, read_config
) -> None:
    cli("rule", "add", "keep", "--action", "retain", "--set", "days=60")
    run = cli(
        "ruleset", "set", "free-tier", "--when", "user.tier = trial", "--priority", "5",
        "--add-rule", "keep", "--rm-rule", "downgrade-o3",
    )  # fmt: skip
    assert (run.exit_code, run.stdout, run.stderr) == (0, "Updated ruleset free-tier.\n", "")
    assert read_config()["rulesets"]["free-tier"] == {
        "when": "user.tier = trial",
        "rules": ["keep"],
        "priority": 5,
    }
    bad = cli("ruleset", "set", "free-tier", "--when", "user.tier =")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: rulesets.free-tier.when: ")
    assert cli("ruleset", "set", "free-tier", "--add-rule", "nope").stderr == (
        'error: rulesets.free-tier.rules[1]: no rule named "nope"\n'
    )
    assert cli("ruleset", "set", "free-tier").stderr == (
        "error: nothing to set: give --when, --priority, --add-rule or --rm-rule\n"
    )
    assert cli("ruleset", "set", "free-tier", "--rm-rule", "keep").stderr == (
        "error: rulesets.free-tier: rules must name at least one rule\n"
    )
