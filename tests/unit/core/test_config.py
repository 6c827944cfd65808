"""Config validation: every error names its TOML path and says what is wrong, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from waystone_cli.core.config import (
    Config,
    Credits,
    Price,
    UsageTrigger,
    load_config,
    parse_config,
    parse_toml,
)
from waystone_cli.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

ERRORS = [
    ("unknown top-level key", "srever = {}", 'srever: unknown key (did you mean "server"?)'),
    (
        "unknown server key",
        '[server]\nhots = "x"',
        'server.hots: unknown key (did you mean "host"?)',
    ),
    (
        "port not an integer",
        '[server]\nport = "80"',
        "server.port: expected an integer, got a string",
    ),
    ("port out of range", "[server]\nport = 70000", "server.port: must be between 1 and 65535"),
    (
        "boolean expected",
        '[server]\nrequire_identity = "yes"',
        "server.require_identity: expected a boolean, got a string",
    ),
    (
        "unknown time zone",
        '[server]\ntimezone = "Mars/Base"',
        'server.timezone: unknown time zone "Mars/Base"',
    ),
    (
        "bad log format",
        '[server]\nlog_format = "xml"',
        'server.log_format: must be "text" or "json"',
    ),
    ("unknown ledger key", '[ledger]\nfile = "x"', "ledger.file: unknown key"),
    (
        "flush interval too long",
        "[ledger]\nflush_interval_ms = 5000",
        "ledger.flush_interval_ms: must be at most 1000 (rows reach disk within a second)",
    ),
    (
        "ledger memory limit too small",
        "[ledger]\nmemory_limit_mb = 8",
        "ledger.memory_limit_mb: must be at least 16"
        " (DuckDB needs room for a batch, the rollup's fold and reports)",
    ),
    ("section not a table", "users = 3", "users: expected a table, got an integer"),
    (
        "unknown provider key",
        '[providers.p]\nkind = "mock"\nurl = "x"',
        "providers.p.url: unknown key",
    ),
    (
        "unknown provider kind",
        '[providers.p]\nkind = "vllm"',
        "providers.p.kind: must be one of openai, mock, anthropic",
    ),
    (
        "openai provider without base_url",
        '[providers.p]\nmodels = ["m"]',
        "providers.p: base_url is required",
    ),
    (
        "base_url without scheme",
        '[providers.p]\nbase_url = "api.example.com"',
        "providers.p.base_url: must start with http:// or https://",
    ),
    (
        "model not a string",
        '[providers.p]\nkind = "mock"\nmodels = ["a", 2]',
        "providers.p.models[1]: expected a string, got an integer",
    ),
    (
        "header not a string",
        '[providers.p]\nkind = "mock"\nheaders = { X-A = 1 }',
        "providers.p.headers.X-A: expected a string, got an integer",
    ),
    (
        "provider name with slash",
        '[providers."a/b"]\nkind = "mock"',
        'providers."a/b": invalid provider name',
    ),
    (
        "price with neither input nor output",
        '[prices."p/m"]\ncached_input = 1.0',
        'prices."p/m": needs input and/or output (USD per million tokens)',
    ),
    ("negative price", "[prices.m]\ninput = -1", "prices.m.input: must not be negative"),
    (
        "negative cache write price",
        "[prices.m]\ninput = 1\ncache_write_1h = -6",
        "prices.m.cache_write_1h: must not be negative",
    ),
    (
        "metadata value not a scalar",
        '[users.alice]\nmetadata = { tags = ["a"] }',
        "users.alice.metadata.tags: metadata values must be scalars",
    ),
    (
        "user in unknown group",
        '[users.alice]\ngroups = ["acme"]',
        'users.alice.groups[0]: no group named "acme"',
    ),
    (
        "bad credits window",
        '[users.alice]\ncredits = { usd = 5, window = "fortnight" }',
        'users.alice.credits.window: invalid window "fortnight" (day, week, month, or a rolling duration like 1h, 24h, 7d, 30d)',
    ),
    (
        "credits without usd",
        '[users.alice]\ncredits = { window = "day" }',
        "users.alice.credits: usd is required",
    ),
    (
        "invalid user id",
        '[users."bad id"]',
        'users."bad id": invalid id (letters, digits and ._@:+-_ up to 128 characters)',
    ),
    (
        "negative group credits",
        "[groups.acme]\ncredits = { usd = -5 }",
        "groups.acme.credits.usd: must not be negative",
    ),
    ("unknown group key", '[groups.acme]\nmembers = ["a"]', "groups.acme.members: unknown key"),
    (
        "unknown rule key",
        '[rules.r]\naction = "block"\ntrigger = "x"',
        "rules.r.trigger: unknown key",
    ),
    ("rule without action", '[rules.r]\nmodel = "o3"', "rules.r: action is required"),
    (
        "unknown action",
        '[rules.r]\naction = "explode"',
        'rules.r.action: unknown action "explode" (one of block, change_model, fallback, limit_tokens, check_output, dataset, retain, capture, flag)',
    ),
    (
        "field of another action",
        '[rules.r]\naction = "block"\nto = "o3-mini"',
        'rules.r.to: not a field of action "block"',
    ),
    (
        "change_model without to",
        '[rules.r]\naction = "change_model"',
        'rules.r: action "change_model" needs to',
    ),
    (
        "dataset without name",
        '[rules.r]\naction = "dataset"',
        'rules.r: action "dataset" needs name',
    ),
    (
        "retain days not positive",
        '[rules.r]\naction = "retain"\ndays = 0',
        "rules.r.days: must be positive",
    ),
    (
        "limit_tokens max wrong type",
        '[rules.r]\naction = "limit_tokens"\nmax = "lots"',
        "rules.r.max: expected an integer, got a string",
    ),
    (
        "bad deny_regex",
        '[rules.r]\naction = "check_output"\ndeny_regex = "(unclosed"',
        "rules.r.deny_regex: invalid regex: missing ), unterminated subpattern at position 0",
    ),
    (
        "check_output with nothing to check",
        '[rules.r]\naction = "check_output"\non_fail = "flag"',
        'rules.r: action "check_output" needs deny_regex and/or moderation',
    ),
    (
        "bad on_fail",
        '[rules.r]\naction = "check_output"\ndeny_regex = "x"\non_fail = "ignore"',
        'rules.r.on_fail: must be "block" or "flag"',
    ),
    (
        "unknown usage metric",
        '[rules.r]\naction = "block"\nusage = { metric = "dollars", window = "day", over = 1 }',
        'rules.r.usage.metric: unknown metric "dollars" (one of cost_usd, tokens, input_tokens, output_tokens, requests)',
    ),
    (
        "bad usage window",
        '[rules.r]\naction = "block"\nusage = { metric = "requests", window = "1y", over = 1 }',
        'rules.r.usage.window: invalid window "1y" (day, week, month, or a rolling duration like 1h, 24h, 7d, 30d)',
    ),
    (
        "usage without over",
        '[rules.r]\naction = "block"\nusage = { metric = "requests", window = "day" }',
        "rules.r.usage: over is required",
    ),
    (
        "unknown usage key",
        '[rules.r]\naction = "block"\nusage = { metric = "requests", window = "day", over = 1, per = "user" }',
        "rules.r.usage.per: unknown key",
    ),
    (
        "spike without baseline",
        '[rules.r]\naction = "flag"\nspike = { metric = "requests", window = "1h", factor = 3 }',
        "rules.r.spike: baseline is required",
    ),
    (
        "unknown spike metric",
        '[rules.r]\naction = "flag"\nspike = { metric = "calls", window = "1h", factor = 3, baseline = "1d" }',
        'rules.r.spike.metric: unknown metric "calls" (one of cost_usd, tokens, input_tokens, output_tokens, requests)',
    ),
    (
        "spike baseline not longer than its window",
        '[rules.r]\naction = "flag"\nspike = { metric = "requests", window = "1h", factor = 3, baseline = "60m" }',
        'rules.r.spike.baseline: must be longer than the window "1h"',
    ),
    (
        "spike on a calendar window",
        '[rules.r]\naction = "flag"\nspike = { metric = "requests", window = "day", factor = 3, baseline = "7d" }',
        'rules.r.spike.window: "day" is a calendar window; a spike needs a rolling one like 1h or 7d',
    ),
    (
        "spike factor of one",
        '[rules.r]\naction = "flag"\nspike = { metric = "requests", window = "1h", factor = 1, baseline = "1d" }',
        "rules.r.spike.factor: must be greater than 1",
    ),
    (
        "negative spike min",
        '[rules.r]\naction = "block"\nspike = { metric = "tokens", window = "1h", factor = 2, baseline = "1d", min = -1 }',
        "rules.r.spike.min: must not be negative",
    ),
    (
        "unknown spike key",
        '[rules.r]\naction = "flag"\nspike = { metric = "requests", window = "1h", factor = 3, baseline = "1d", over = 1 }',
        "rules.r.spike.over: unknown key",
    ),
    (
        "flag action with a field",
        '[rules.r]\naction = "flag"\nmessage = "no"',
        'rules.r.message: not a field of action "flag"',
    ),
    (
        "share max above one",
        '[rules.r]\naction = "block"\nshare = { max = 1.5 }',
        "rules.r.share.max: must be a fraction in (0, 1]",
    ),
    (
        "empty rate",
        '[rules.r]\naction = "block"\nrate = {}',
        "rules.r.rate: needs rpm, tpm or concurrent",
    ),
    (
        "route to unknown provider",
        '[rules.r]\naction = "change_model"\nto = "eu/gpt-4o"',
        'rules.r.to: no provider named "eu"',
    ),
    (
        "ruleset names unknown rule",
        '[rules.cap]\naction = "block"\n[rulesets.free-tier]\nwhen = "always"\nrules = ["cap", "cap-10"]',
        'rulesets.free-tier.rules[1]: no rule named "cap-10"',
    ),
    ("ruleset without when", '[rulesets.rs]\nrules = ["x"]', "rulesets.rs: when is required"),
    (
        "ruleset without rules",
        '[rulesets.rs]\nwhen = "always"\nrules = []',
        "rulesets.rs: rules must name at least one rule",
    ),
    (
        "ruleset bad condition",
        '[rules.r]\naction = "capture"\n[rulesets.rs]\nwhen = "user.tier = free and"\nrules = ["r"]',
        'rulesets.rs.when: expected a condition after "and" at position 17',
    ),
    (
        "ruleset unknown operator",
        '[rules.r]\naction = "capture"\n[rulesets.rs]\nwhen = "tier == free"\nrules = ["r"]',
        'rulesets.rs.when: expected a value after "=", found "=" at position 6',
    ),
    (
        "ruleset priority wrong type",
        '[rules.r]\naction = "capture"\n[rulesets.rs]\nwhen = "always"\nrules = ["r"]\npriority = "high"',
        "rulesets.rs.priority: expected an integer, got a string",
    ),
    (
        "max_response_mb not positive",
        "[server]\nmax_response_mb = 0",
        "server.max_response_mb: must be positive",
    ),
    (
        "provider idle_timeout_s not positive",
        '[providers.p]\nbase_url = "http://x"\nidle_timeout_s = -1',
        "providers.p.idle_timeout_s: must be positive",
    ),
    (
        "provider timeout_s not a number",
        '[providers.p]\nbase_url = "http://x"\ntimeout_s = nan',
        "providers.p.timeout_s: must be a finite number",
    ),
    ("key without hash", "[keys.k]\ncreated = 2026-01-01", "keys.k: hash is required"),
    (
        "NaN body limit",
        "[server]\nmax_body_mb = nan",
        "server.max_body_mb: must be a finite number",
    ),
    (
        "infinite credits",
        "[users.a]\ncredits = { usd = inf }",
        "users.a.credits.usd: must be a finite number",
    ),
    (
        "NaN usage trigger",
        '[rules.r]\naction = "block"\nusage = { metric = "tokens", window = "day", over = nan }',
        "rules.r.usage.over: must be a finite number",
    ),
    (
        "unknown request_metadata",
        '[server]\nrequest_metadata = "trust"',
        'server.request_metadata: must be "merge" or "ignore"',
    ),
    (
        "request_metadata wrong type",
        "[server]\nrequest_metadata = false",
        "server.request_metadata: expected a string, got a boolean",
    ),
    (
        "metrics_public wrong type",
        '[server]\nmetrics_public = "yes"',
        "server.metrics_public: expected a boolean, got a string",
    ),
    ("unknown otel key", '[otel]\nurl = "http://x"', "otel.url: unknown key"),
]


@pytest.mark.parametrize(("case", "text", "message"), ERRORS, ids=[c[0] for c in ERRORS])
def test_validation_error_message(case: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(parse_toml(text))
    assert str(caught.value) == message


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml("[users.alice\n", "/etc/waystone.toml")
    assert str(caught.value) == (
        "/etc/waystone.toml: invalid TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 13)"
    )


def test_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()


def test_invalid_utf8_is_a_config_error_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not valid UTF-8 (byte 0xe9 at offset 20)"


def test_toml_nested_too_deeply_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml("a = " + "[" * 100_000, "/etc/waystone.toml")
    assert str(caught.value) == "/etc/waystone.toml: invalid TOML: nested too deeply"


def test_a_valid_config_builds_the_snapshot() -> None:
    config = parse_config(
        parse_toml(
            """
            [groups.acme]
            credits = { usd = 500 }
            [users.alice]
            metadata = { tier = "free" }
            groups = ["acme"]
            [rules.cap]
            usage = { metric = "cost_usd", window = "month", over = 10 }
            action = "block"
            [rulesets.free-tier]
            when = "user.tier = free"
            rules = ["cap"]
            """
        )
    )
    assert config.groups["acme"].credits == Credits(usd=500.0, window="month")
    assert config.users["alice"].groups == ("acme",)
    assert dict(config.users["alice"].metadata) == {"tier": "free"}
    assert config.rules["cap"].usage == UsageTrigger(metric="cost_usd", window="month", over=10.0)
    assert (config.rulesets["free-tier"].rules, config.rulesets["free-tier"].enabled) == (
        ("cap",),
        True,
    )


def test_sample_config_validates_with_the_documented_examples() -> None:
    config = load_config(ROOT / "sample-config.toml")
    assert {n: (rs.when, rs.rules, rs.enabled) for n, rs in config.rulesets.items()} == {
        "free-tier": ("user.tier = free", ("downgrade-o3", "cap-10-usd"), True),
        "newcomers": ("user.joined within 30d", ("newcomers-dataset",), True),
        "eu-orgs": ("group.region = eu", ("route-eu", "route-eu-mini"), True),
        "retention": ("always", ("retain-60d",), True),
        "team-guardrails": (
            "has group and not group.plan = enterprise",
            ("member-share", "rpm-60", "fallback-mock", "cap-tokens", "no-secrets", "capture-all"),
            False,
        ),
    }
    assert config.rules["cap-10-usd"].usage == UsageTrigger("cost_usd", "month", 10.0)
    assert (config.rules["route-eu"].to, config.rules["retain-60d"].days) == (
        "openai-eu/gpt-4o",
        60,
    )
    assert config.rules["newcomers-dataset"].dataset == "newcomers"
    assert config.providers["local"].kind == "mock"
    assert config.providers["local"].models == ("mock-small", "mock-large")
    assert config.providers["openai"].api_key == "env:OPENAI_API_KEY"
    assert set(config.prices) == {"local/mock-small", "local/mock-large"}


def test_sample_config_documents_every_key() -> None:
    """Every field of every config dataclass appears in sample-config.toml as a key."""
    import dataclasses
    import re

    from waystone_cli.core import config as schema

    text = (ROOT / "sample-config.toml").read_text()
    written = set(re.findall(r"^#? ?([a-z][a-z0-9_]*) =", text, re.M))
    written |= set(re.findall(r"[{,] ([a-z][a-z0-9_]*) =", text))
    internal = {"name", "id", "condition", "dataset"}  # table keys or derived, not written
    classes = [
        schema.ServerConfig,
        schema.LedgerConfig,
        schema.ProviderConfig,
        schema.Price,
        schema.Credits,
        schema.UserConfig,
        schema.GroupConfig,
        schema.UsageTrigger,
        schema.ShareTrigger,
        schema.RateTrigger,
        schema.SpikeTrigger,
        schema.RuleConfig,
        schema.RulesetConfig,
        schema.KeyConfig,
        schema.OtelConfig,
        schema.ClusterConfig,
    ]
    fields = {f.name for c in classes for f in dataclasses.fields(c)} - internal
    assert fields - written == set()
    assert "name" in written  # the dataset action's field


def test_the_snapshot_keeps_rate_windows_only_when_a_rule_has_a_rate_trigger() -> None:
    from daemon.state import Snapshot

    cap = (
        '[rules.cap]\nusage = { metric = "requests", window = "day", over = 9 }\naction = "block"\n'
    )
    rpm = '[rules.rpm]\nrate = { rpm = 60 }\naction = "block"\n'
    assert Snapshot.build(parse_config(parse_toml(cap))).rates is False
    assert Snapshot.build(parse_config(parse_toml(cap + rpm))).rates is True


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", '"30"'])
def test_client_timeout_must_be_a_positive_finite_number_of_seconds(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(parse_toml(f"[server]\nclient_timeout_s = {value}\n"))
    assert str(err.value).startswith("server.client_timeout_s: ")


def test_client_timeout_defaults_to_30_seconds() -> None:
    assert parse_config(parse_toml("")).server.client_timeout_s == 30.0
    assert parse_config(parse_toml("[server]\nclient_timeout_s = 5\n")).server.client_timeout_s == 5


def test_a_price_reads_its_cache_write_rates() -> None:
    config = parse_config({"prices": {"claude-x": {"input": 3, "output": 15, "cache_write": 3.75}}})
    assert config.prices["claude-x"] == Price(
        input=3.0, output=15.0, cache_write=3.75, cache_write_1h=None
    )


def test_a_postgres_ledger_batches_5000_rows_by_default_and_duckdb_1000() -> None:
    assert parse_config(parse_toml("")).ledger.batch_size == 1000
    postgres = '[ledger]\nurl = "postgresql://w@127.0.0.1:5432/w"\n'
    assert parse_config(parse_toml(postgres)).ledger.batch_size == 5000
    assert parse_config(parse_toml(postgres + "batch_size = 200\n")).ledger.batch_size == 200
