"""CLI writes keep the file's comments, order and layout."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.cli.conftest import Cli
from waystone_cli.configstore import update_config


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_every_write_keeps_the_starter_comments_in_order(cli: Cli, config_path: Path) -> None:
    assert cli("init").exit_code == 0
    starter = config_path.read_text()
    original = comment_lines(starter)
    assert len(original) > 10
    writes = [
        ("user", "add", "alice", "--meta", "tier=free"),
        ("user", "set", "alice", "tier=paid"),
        ("group", "add", "acme"),
        ("group", "link", "acme", "alice"),
        ("rule", "add", "cap", "--action", "block", "--set", "usage.metric=requests",
         "--set", "usage.window=day", "--set", "usage.over=5"),
        ("ruleset", "add", "free", "--when", "user.tier = free", "--rule", "cap"),
        ("provider", "add", "openai", "--base-url", "https://api.openai.com/v1",
         "--api-key-env", "OPENAI_API_KEY", "--model", "gpt-4o"),
        ("key", "create", "ci"),
    ]  # fmt: skip
    for args in writes:
        run = cli(*args)
        assert run.exit_code == 0, (args, run.stderr)
        assert comment_lines(config_path.read_text()) == original, args
    removals = [
        ("ruleset", "rm", "free"),
        ("rule", "rm", "cap"),
        ("group", "unlink", "acme", "alice"),
        ("user", "rm", "alice"),
        ("group", "rm", "acme"),
        ("provider", "rm", "openai"),
        ("provider", "rm", "local"),
    ]
    for args in removals:
        run = cli(*args)
        assert run.exit_code == 0, (args, run.stderr)
        assert comment_lines(config_path.read_text()) == original, args


def test_removing_an_entry_keeps_the_comments_of_the_next_header(
    cli: Cli, write_config, config_path: Path
) -> None:
    write_config(
        "# customers\n"
        "[users.a]\n"
        'metadata = { tier = "free" }\n'
        "\n"
        "# b pays yearly\n"
        "[users.b]\n"
        'metadata = { tier = "paid" }\n'
        "\n"
        "# raised after the Q3 review\n"
        "[groups.acme]\n"
        'credits = { usd = 500, window = "month" }\n'
    )
    assert cli("user", "rm", "b").exit_code == 0
    assert config_path.read_text() == (
        "# customers\n"
        "[users.a]\n"
        'metadata = { tier = "free" }\n'
        "\n"
        "# b pays yearly\n"
        "\n"
        "# raised after the Q3 review\n"
        "[groups.acme]\n"
        'credits = { usd = 500, window = "month" }\n'
    )


def test_a_new_entry_goes_below_the_comments_of_the_next_section(
    cli: Cli, write_config, config_path: Path
) -> None:
    write_config(
        "# gateways\n"
        "[providers.local]\n"
        'kind = "mock"\n'
        "models = []  # any model\n"
        "\n"
        "# raised after the Q3 review\n"
        "[users.alice]\n"
        'metadata = { tier = "paid" }\n'
    )
    assert cli("provider", "add", "other", "--kind", "mock", "--model", "m").exit_code == 0
    assert config_path.read_text() == (
        "# gateways\n"
        "[providers.local]\n"
        'kind = "mock"\n'
        "models = []  # any model\n"
        "\n"
        "[providers.other]\n"
        'kind = "mock"\n'
        'models = ["m"]\n'
        "\n"
        "# raised after the Q3 review\n"
        "[users.alice]\n"
        'metadata = { tier = "paid" }\n'
    )


def test_a_changed_value_keeps_its_line_comment(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[server]\nport = 8787  # the team's port\nhost = '127.0.0.1'\n")
    update_config(path, lambda doc: doc["server"].update(port=9000))
    assert path.read_text() == "[server]\nport = 9000  # the team's port\nhost = '127.0.0.1'\n"
    assert tomllib.loads(path.read_text()) == {"server": {"port": 9000, "host": "127.0.0.1"}}


def test_a_section_split_across_the_file_is_edited_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[rules.a]\naction = "capture"\n\n'
        '[rulesets.f]\nwhen = "always"\nrules = ["a"]\n\n'
        "# five a minute, for now\n"
        '[rules.slow]\naction = "block"\nrate = { rpm = 5 }\n\n'
        "# the team\n[users.x]\n"
    )

    def change(doc: dict) -> None:
        doc["rules"]["slow"]["rate"]["rpm"] = 100
        doc["rules"]["cap"] = {"action": "block", "rate": {"concurrent": 2}}

    update_config(path, change)
    assert path.read_text() == (
        '[rules.a]\naction = "capture"\n\n'
        '[rulesets.f]\nwhen = "always"\nrules = ["a"]\n\n'
        "# five a minute, for now\n"
        '[rules.slow]\naction = "block"\nrate = { rpm = 100 }\n\n'
        '[rules.cap]\naction = "block"\nrate = { concurrent = 2 }\n\n'
        "# the team\n[users.x]\n"
    )
