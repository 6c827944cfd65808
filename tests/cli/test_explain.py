"""``waystone rules explain`` on a config and a ledger filled by SQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli
from waystone_cli.ledger.connection import open_readwrite

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

CONFIG = """
[providers.local]
kind = "mock"
models = ["mock-small", "mock-large"]

[users.alice]
metadata = { tier = "free" }
groups = ["acme"]

[groups.acme]
metadata = { region = "eu" }
credits = { usd = 100, window = "month" }

[rules.downgrade]
model = "mock-large"
action = "change_model"
to = "mock-small"

[rules.cap-10-usd]
usage = { metric = "cost_usd", window = "30d", over = 10 }
action = "block"

[rules.member-share]
share = { of = "credits", max = 0.10 }
action = "block"

[rules.short]
action = "limit_tokens"
max = 256

[rulesets.free-tier]
when = "user.tier = free"
rules = ["downgrade", "cap-10-usd"]

[rulesets.orgs]
when = "has group"
rules = ["member-share", "short"]

[rulesets.off]
when = "always"
enabled = false
rules = ["short"]
"""


@pytest.fixture
def ledger(waystone_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice spent $5 alone 10 days ago and $6 in acme an hour ago; bob $1 in acme."""
    monkeypatch.setattr("waystone_cli.commands.rules_explain.now", lambda: NOW)
    con = open_readwrite(waystone_home / "ledger.duckdb")
    con.executemany(
        "INSERT INTO requests (id, ts, user_id, group_id, route, status, outcome, "
        "input_tokens, output_tokens, cost_usd) "
        "VALUES (?, ?, ?, ?, 'chat/completions', 200, 'ok', 100, 50, ?)",
        [
            ("r1", "2026-03-05 08:00:00", "alice", None, "5"),
            ("r2", "2026-03-15 11:00:00", "alice", "acme", "6"),
            ("r3", "2026-03-15 11:30:00", "bob", "acme", "1"),
            ("r4", "2026-02-01 00:00:00", "alice", None, "100"),  # outside every window
        ],
    )
    con.execute(
        "INSERT INTO users VALUES ('alice', '2026-03-01 00:00:00', '2026-03-15 11:00:00', "
        """'{"tier": "pro", "region": "eu"}')"""
    )
    con.close()


ALICE_IN_ACME: dict[str, Any] = {
    "user": "alice",
    "group": "acme",
    "model": "local/mock-large",
    "allowed": False,
    "status": 429,
    "message": 'blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd in the last 30d '
    "is $11 of $10 (reached)",
    "model_used": "local/mock-small",
    "max_tokens": 256,
    "rulesets": [
        {
            "name": "free-tier",
            "matched": True,
            "subjects": ["user:alice"],
            "why": ['user.tier = free: "free" matches, holds', "applies to user alice"],
        },
        {
            "name": "orgs",
            "matched": True,
            "subjects": ["group:acme"],
            "why": ["has group: the request names group acme", "applies to group acme"],
        },
        {"name": "off", "matched": False, "subjects": [], "why": ["disabled"]},
    ],
    "limits": [
        {
            "ruleset": None,
            "rule": "credits",
            "subject": "group:acme",
            "metric": "cost_usd",
            "window": "month",
            "used": 7.0,
            "limit": 100.0,
        },
        {
            "ruleset": "free-tier",
            "rule": "cap-10-usd",
            "subject": "user:alice",
            "metric": "cost_usd",
            "window": "30d",
            "used": 11.0,
            "limit": 10.0,
        },
        {
            "ruleset": "orgs",
            "rule": "member-share",
            "subject": "user:alice in group:acme",
            "metric": "cost_usd",
            "window": "month",
            "used": 6.0,
            "limit": 10.0,
        },
    ],
    "flagged": False,
    "spikes": [],
    "reasons": [
        "credits of group:acme: $7 of $100 used this month",
        'ruleset "free-tier" applies to user:alice',
        'rule "downgrade" of ruleset "free-tier" for user:alice: model "local/mock-large" '
        'matches "mock-large": change the model to "mock-small"',
        'rule "cap-10-usd" of ruleset "free-tier" for user:alice: cost_usd in the last 30d '
        "is $11 of $10 (reached): blocks the request",
        'ruleset "orgs" applies to group:acme',
        'rule "member-share" of ruleset "orgs" for group:acme: cost_usd of user:alice in '
        "group:acme this month is $6 of $10 (10% of the group's credits): not fired",
        'rule "short" of ruleset "orgs" for group:acme: no trigger, always fires: cap '
        "max_tokens at 256",
        'ruleset "off" is disabled',
        'model changed from "local/mock-large" to "local/mock-small" by ruleset "free-tier", '
        'rule "downgrade"',
        'verdict: blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd in the last 30d '
        "is $11 of $10 (reached)",
    ],
}

# bob was never declared nor seen alone: no tier, so only "orgs" applies to acme.
BOB_IN_ACME: dict[str, Any] = {
    "user": "bob",
    "group": "acme",
    "model": "local/mock-small",
    "allowed": True,
    "status": 200,
    "message": None,
    "model_used": "local/mock-small",
    "max_tokens": 256,
    "rulesets": [
        {
            "name": "free-tier",
            "matched": False,
            "subjects": [],
            "why": ["user.tier = free: missing, fails", "no match"],
        },
        ALICE_IN_ACME["rulesets"][1],
        ALICE_IN_ACME["rulesets"][2],
    ],
    "limits": [
        {
            "ruleset": None,
            "rule": "credits",
            "subject": "group:acme",
            "metric": "cost_usd",
            "window": "month",
            "used": 7.0,
            "limit": 100.0,
        },
        {
            "ruleset": "orgs",
            "rule": "member-share",
            "subject": "user:bob in group:acme",
            "metric": "cost_usd",
            "window": "month",
            "used": 1.0,
            "limit": 10.0,
        },
    ],
    "flagged": False,
    "spikes": [],
    "reasons": [
        "credits of group:acme: $7 of $100 used this month",
        'ruleset "free-tier" does not match: user.tier = free: missing, fails; no match',
        'ruleset "orgs" applies to group:acme',
        'rule "member-share" of ruleset "orgs" for group:acme: cost_usd of user:bob in '
        "group:acme this month is $1 of $10 (10% of the group's credits): not fired",
        'rule "short" of ruleset "orgs" for group:acme: no trigger, always fires: cap '
        "max_tokens at 256",
        'ruleset "off" is disabled',
    ],
}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--user", "alice", "--group", "acme", "--model", "mock-large"), ALICE_IN_ACME),
        (("--user", "bob", "--group", "acme", "--model", "local/mock-small"), BOB_IN_ACME),
    ],
    ids=["alice over her cap", "bob within the group's limits"],
)
def test_explain_json(
    cli: Cli,
    write_config: Callable[[str], Path],
    ledger: None,
    args: tuple[str, ...],
    expected: dict[str, Any],
) -> None:
    write_config(CONFIG)
    run = cli("rules", "explain", *args, "--json")
    assert (run.exit_code, run.stderr) == (0, "")
    assert json.loads(run.stdout) == expected


def test_explain_without_the_group_never_reaches_group_rules(
    cli: Cli, write_config: Callable[[str], Path], ledger: None
) -> None:
    write_config(CONFIG)
    report = json.loads(
        cli("rules", "explain", "--user", "alice", "--model", "mock-small", "--json").stdout
    )
    assert [(r["name"], r["matched"]) for r in report["rulesets"]] == [
        ("free-tier", True),
        ("orgs", False),
        ("off", False),
    ]
    assert (report["status"], report["max_tokens"], report["limits"]) == (
        429,
        None,
        [
            {
                "ruleset": "free-tier",
                "rule": "cap-10-usd",
                "subject": "user:alice",
                "metric": "cost_usd",
                "window": "30d",
                "used": 11.0,
                "limit": 10.0,
            },
        ],
    )


EXPECTED_TEXT = """\
A request from user alice, group acme for local/mock-large

Ruleset     Matched    Subject      Why
───────────────────────────────────────────────────────────────────────────
free-tier   yes        user:alice   user.tier = free: "free" matches, holds
                                    applies to user alice
orgs        yes        group:acme   has group: the request names group acme
                                    applies to group acme
off         disabled   -            disabled

Rule                   Subject                    Metric     Window   Used   Limit
──────────────────────────────────────────────────────────────────────────────────
credits                group:acme                 cost_usd   month      $7    $100
free-tier/cap-10-usd   user:alice                 cost_usd   30d       $11     $10
orgs/member-share      user:alice in group:acme   cost_usd   month      $6     $10

Verdict: refused with 429: blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd in the last
30d is $11 of $10 (reached)

Why:
  - credits of group:acme: $7 of $100 used this month
  - ruleset "free-tier" applies to user:alice
  - rule "downgrade" of ruleset "free-tier" for user:alice: model "local/mock-large" matches
    "mock-large": change the model to "mock-small"
  - rule "cap-10-usd" of ruleset "free-tier" for user:alice: cost_usd in the last 30d is $11 of $10
    (reached): blocks the request
  - ruleset "orgs" applies to group:acme
  - rule "member-share" of ruleset "orgs" for group:acme: cost_usd of user:alice in group:acme this
    month is $6 of $10 (10% of the group's credits): not fired
  - rule "short" of ruleset "orgs" for group:acme: no trigger, always fires: cap max_tokens at 256
  - ruleset "off" is disabled
  - model changed from "local/mock-large" to "local/mock-small" by ruleset "free-tier", rule
    "downgrade"
  - verdict: blocked by ruleset "free-tier", rule "cap-10-usd": cost_usd in the last 30d is $11 of
    $10 (reached)
"""


def test_explain_prints_rulesets_limits_and_the_verdict(
    cli: Cli, write_config: Callable[[str], Path], ledger: None
) -> None:
    write_config(CONFIG)
    run = cli("rules", "explain", "--user", "alice", "--group", "acme", "--model", "mock-large")
    assert run.exit_code == 0
    # Rich pads table cells to the column width; trailing spaces carry no meaning.
    assert "\n".join(line.rstrip() for line in run.stdout.splitlines()) + "\n" == EXPECTED_TEXT


def test_explain_an_unknown_model_is_one_error_line(
    cli: Cli, write_config: Callable[[str], Path], ledger: None
) -> None:
    write_config(CONFIG)
    run = cli("rules", "explain", "--user", "alice", "--model", "gpt-9")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        'error: model "gpt-9" is not served by any provider\n',
    )


def test_explain_reads_seen_metadata_only_when_request_metadata_merges(
    cli: Cli, write_config: Callable[[str], Path], ledger: None
) -> None:
    """The ledger saw alice send region = eu; only the TOML declares her tier."""
    eu = '\n[rulesets.eu]\nwhen = "user.region = eu"\nrules = ["short"]\n'
    args = ("rules", "explain", "--user", "alice", "--model", "mock-small", "--json")
    matched = {}
    for mode in ("merge", "ignore"):
        write_config(f'[server]\nrequest_metadata = "{mode}"\n' + CONFIG + eu)
        report = json.loads(cli(*args).stdout)
        matched[mode] = [(r["name"], r["matched"]) for r in report["rulesets"]]
    assert matched == {
        "merge": [("free-tier", True), ("orgs", False), ("off", False), ("eu", True)],
        "ignore": [("free-tier", True), ("orgs", False), ("off", False), ("eu", False)],
    }
