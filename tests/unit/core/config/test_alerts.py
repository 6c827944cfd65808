"""``[alerts]``: defaults, and every refusal naming its TOML path."""

from __future__ import annotations

import pytest

from waystone_cli.core.config import AlertsConfig, parse_config, parse_toml
from waystone_cli.core.config.warnings import config_warnings
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.secrets import Redactor, alerts_secret, config_secrets


def _parse(text: str) -> AlertsConfig:
    return parse_config(parse_toml(text)).alerts


def test_no_alerts_table_is_off_with_the_default_thresholds() -> None:
    assert _parse("") == AlertsConfig(webhook=None, secret=None, thresholds=(0.5, 0.8, 1.0))


def test_alerts_table_is_read_whole() -> None:
    alerts = _parse(
        '[alerts]\nwebhook = "https://hooks.example.com/w"\nsecret = "env:HOOK_SECRET"\n'
        "thresholds = [0.25, 1, 1.5]\ntimeout_s = 3"
    )
    assert alerts == AlertsConfig(
        webhook="https://hooks.example.com/w",
        secret="env:HOOK_SECRET",
        thresholds=(0.25, 1.0, 1.5),
        timeout_s=3.0,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('webhook = "ftp://x"', "alerts.webhook: must start with http:// or https://"),
        ('secret = "env:"', "alerts.secret: must be the secret or env:NAME"),
        ("thresholds = []", "alerts.thresholds: needs at least one fraction, like [0.8]"),
        (
            "thresholds = [0.5, 0]",
            "alerts.thresholds[1]: must be a fraction above 0 (0.8 is 80% of a limit)",
        ),
        (
            "thresholds = [-1.0]",
            "alerts.thresholds[0]: must be a fraction above 0 (0.8 is 80% of a limit)",
        ),
        (
            "thresholds = [0.8, 0.5]",
            "alerts.thresholds[1]: thresholds must be increasing, without repeats",
        ),
        (
            "thresholds = [0.5, 0.5]",
            "alerts.thresholds[1]: thresholds must be increasing, without repeats",
        ),
        ('thresholds = ["half"]', "alerts.thresholds[0]: expected a number, got a string"),
        ("thresholds = [true]", "alerts.thresholds[0]: expected a number, got a boolean"),
        (
            "thresholds = [inf]",
            "alerts.thresholds[0]: must be a fraction above 0 (0.8 is 80% of a limit)",
        ),
        ("thresholds = 0.5", "alerts.thresholds: expected an array, got a number"),
        ("timeout_s = 0", "alerts.timeout_s: must be a positive number of seconds"),
        ("webhok = 'x'", 'alerts.webhok: unknown key (did you mean "webhook"?)'),
    ],
)
def test_invalid_alerts_value_names_its_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse("[alerts]\n" + text)
    assert str(err.value) == message


def test_env_secret_is_resolved_and_redacted_with_the_webhook() -> None:
    config = parse_config(
        parse_toml('[alerts]\nwebhook = "https://hooks.example.com/T0/B0/XYZ"\nsecret = "env:S"')
    )
    env = {"S": "whsec-0123456789"}
    assert alerts_secret(config, env) == "whsec-0123456789"
    redactor = Redactor.of(config_secrets(config, env))
    assert redactor.text(
        "posting to https://hooks.example.com/T0/B0/XYZ with whsec-0123456789"
    ) == ("posting to [redacted] with [redacted]")


def test_literal_secret_is_used_as_written_and_unset_variable_is_none() -> None:
    literal = parse_config(parse_toml('[alerts]\nsecret = "s3cret-literal"'))
    assert alerts_secret(literal, {}) == "s3cret-literal"
    unset = parse_config(parse_toml('[alerts]\nwebhook = "http://h/x"\nsecret = "env:NOPE"'))
    assert alerts_secret(unset, {}) is None
    assert config_warnings(unset, {}) == [
        "alerts.secret: environment variable NOPE is not set (webhook events are sent"
        " without X-Waystone-Signature)"
    ]
