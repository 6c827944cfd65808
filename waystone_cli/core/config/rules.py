"""Reading ``[rules.*]`` and ``[rulesets.*]``: per-action field checks, triggers, and
the ruleset condition parsed at load (errors point at the offending token)."""

from __future__ import annotations

import re

from waystone_cli.core.conditions import ConditionError, parse_condition
from waystone_cli.core.config.snapshot import (
    ACTIONS,
    NAME_RE,
    USAGE_METRICS,
    RateTrigger,
    RuleConfig,
    RulesetConfig,
    ShareTrigger,
    SpikeTrigger,
    UsageTrigger,
)
from waystone_cli.core.config.table import Table, check_window
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.windows import parse_window

_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "block": ("message",),
    "change_model": ("to",),
    "fallback": ("to", "retries"),
    "limit_tokens": ("max",),
    "check_output": ("deny_regex", "moderation", "on_fail"),
    "dataset": ("name",),
    "retain": ("days",),
    "capture": (),
    "flag": (),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "change_model": ("to",),
    "fallback": ("to",),
    "limit_tokens": ("max",),
    "dataset": ("name",),
    "retain": ("days",),
}
_ACTION_FIELDS = (
    "to",
    "retries",
    "max",
    "deny_regex",
    "moderation",
    "on_fail",
    "name",
    "days",
    "message",
)


def rule_config(name: str, t: Table) -> RuleConfig:
    if not NAME_RE.match(name):
        raise ConfigError(f"{t.path}: invalid rule name")
    action = t.get("action", str, None)
    if action is None:
        raise ConfigError(f"{t.path}: action is required")
    if action not in ACTIONS:
        raise ConfigError(
            f'{t.at("action")}: unknown action "{action}" (one of {", ".join(ACTIONS)})'
        )
    for key in _ACTION_FIELDS:
        if key in t.data and key not in _RULE_FIELDS[action]:
            raise ConfigError(f'{t.at(key)}: not a field of action "{action}"')
    for key in _REQUIRED.get(action, ()):
        if key not in t.data:
            raise ConfigError(f'{t.path}: action "{action}" needs {key}')
    rule = RuleConfig(
        name=name,
        action=action,
        model=t.get("model", str, None),
        usage=_usage(t),
        share=_share(t),
        rate=_rate(t),
        spike=_spike(t),
        to=t.get("to", str, None),
        retries=t.get("retries", int, 0),
        max=t.get("max", int, None),
        deny_regex=t.get("deny_regex", str, None),
        moderation=t.get("moderation", str, None),
        on_fail=t.get("on_fail", str, "block"),
        dataset=t.get("name", str, None),
        days=t.get("days", int, None),
        message=t.get("message", str, None),
    )
    t.done()
    _check_rule_values(rule, t)
    return rule


def _check_rule_values(rule: RuleConfig, t: Table) -> None:
    if rule.action == "check_output":
        if rule.deny_regex is None and rule.moderation is None:
            raise ConfigError(f'{t.path}: action "check_output" needs deny_regex and/or moderation')
        if rule.on_fail not in ("block", "flag"):
            raise ConfigError(f'{t.at("on_fail")}: must be "block" or "flag"')
    if rule.deny_regex is not None:
        try:
            re.compile(rule.deny_regex)
        except re.error as err:
            raise ConfigError(f"{t.at('deny_regex')}: invalid regex: {err}") from err
    if rule.max is not None and rule.max <= 0:
        raise ConfigError(f"{t.at('max')}: must be positive")
    if rule.days is not None and rule.days <= 0:
        raise ConfigError(f"{t.at('days')}: must be positive")
    if rule.retries < 0:
        raise ConfigError(f"{t.at('retries')}: must not be negative")
    if rule.dataset is not None and not NAME_RE.match(rule.dataset):
        raise ConfigError(f"{t.at('name')}: invalid dataset name")


def _usage(t: Table) -> UsageTrigger | None:
    if "usage" not in t.data:
        t.seen.add("usage")
        return None
    u = t.table("usage")
    metric = u.get("metric", str, None)
    window = u.get("window", str, None)
    over = u.get("over", (int, float), None)
    u.done()
    for key, value in (("metric", metric), ("window", window), ("over", over)):
        if value is None:
            raise ConfigError(f"{u.path}: {key} is required")
    if metric not in USAGE_METRICS:
        raise ConfigError(
            f'{u.at("metric")}: unknown metric "{metric}" (one of {", ".join(USAGE_METRICS)})'
        )
    check_window(window, u.at("window"))
    if over < 0:
        raise ConfigError(f"{u.at('over')}: must not be negative")
    return UsageTrigger(metric=metric, window=window, over=float(over))


def _spike(t: Table) -> SpikeTrigger | None:
    """``spike``: rolling windows only, ``baseline`` longer than ``window``, ``factor`` > 1
    (1 or less would call ordinary use a spike), ``min`` >= 0 (see ``core/spike.py``)."""
    if "spike" not in t.data:
        t.seen.add("spike")
        return None
    s = t.table("spike")
    metric = s.get("metric", str, None)
    window = s.get("window", str, None)
    factor = s.get("factor", (int, float), None)
    baseline = s.get("baseline", str, None)
    minimum = s.get("min", (int, float), 0)
    s.done()
    for key, value in (("metric", metric), ("window", window), ("factor", factor)):
        if value is None:
            raise ConfigError(f"{s.path}: {key} is required")
    if baseline is None:
        raise ConfigError(f"{s.path}: baseline is required")
    if metric not in USAGE_METRICS:
        raise ConfigError(
            f'{s.at("metric")}: unknown metric "{metric}" (one of {", ".join(USAGE_METRICS)})'
        )
    window_s = _rolling(window, s.at("window"))
    baseline_s = _rolling(baseline, s.at("baseline"))
    if baseline_s <= window_s:
        raise ConfigError(f'{s.at("baseline")}: must be longer than the window "{window}"')
    if not factor > 1:
        raise ConfigError(f"{s.at('factor')}: must be greater than 1")
    if minimum < 0:
        raise ConfigError(f"{s.at('min')}: must not be negative")
    return SpikeTrigger(
        metric=metric,
        window=window,
        factor=float(factor),
        baseline=baseline,
        min=float(minimum),
    )


def _rolling(text: str, path: str) -> float:
    check_window(text, path)
    duration = parse_window(text).duration
    if duration is None:
        raise ConfigError(
            f'{path}: "{text}" is a calendar window; a spike needs a rolling one like 1h or 7d'
        )
    return duration.total_seconds()


def _share(t: Table) -> ShareTrigger | None:
    if "share" not in t.data:
        t.seen.add("share")
        return None
    s = t.table("share")
    of = s.get("of", str, "credits")
    mx = s.get("max", (int, float), None)
    s.done()
    if of != "credits":
        raise ConfigError(f'{s.at("of")}: must be "credits"')
    if mx is None:
        raise ConfigError(f"{s.path}: max is required")
    if not 0 < mx <= 1:
        raise ConfigError(f"{s.at('max')}: must be a fraction in (0, 1]")
    return ShareTrigger(max=float(mx), of=of)


def _rate(t: Table) -> RateTrigger | None:
    if "rate" not in t.data:
        t.seen.add("rate")
        return None
    r = t.table("rate")
    rate = RateTrigger(
        rpm=r.get("rpm", int, None),
        tpm=r.get("tpm", int, None),
        concurrent=r.get("concurrent", int, None),
    )
    r.done()
    if rate.rpm is None and rate.tpm is None and rate.concurrent is None:
        raise ConfigError(f"{r.path}: needs rpm, tpm or concurrent")
    for key in ("rpm", "tpm", "concurrent"):
        value = getattr(rate, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{r.at(key)}: must be positive")
    return rate


def ruleset_config(name: str, t: Table) -> RulesetConfig:
    if not NAME_RE.match(name):
        raise ConfigError(f"{t.path}: invalid ruleset name")
    when = t.get("when", str, None)
    if when is None:
        raise ConfigError(f"{t.path}: when is required")
    rules = t.str_list("rules")
    if not rules:
        raise ConfigError(f"{t.path}: rules must name at least one rule")
    rs = RulesetConfig(
        name=name,
        when=when,
        rules=rules,
        priority=t.get("priority", int, 0),
        enabled=t.get("enabled", bool, True),
    )
    t.done()
    try:
        condition = parse_condition(when)
    except ConditionError as err:
        raise ConfigError(f"{t.at('when')}: {err}") from err
    object.__setattr__(rs, "condition", condition)
    return rs
