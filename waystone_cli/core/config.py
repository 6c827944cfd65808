"""The config snapshot: frozen dataclasses built from the TOML file, validated whole.

``parse_config(data)`` takes the dict ``tomllib`` produced and returns a ``Config`` or
raises ``ConfigError`` whose message names the TOML path of the first problem, e.g.
``rulesets.free-tier.rules[1]: no rule named "cap-10"``.  Unknown keys are errors.
A snapshot never changes; a reload builds a new one and swaps it in one step.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waystone_cli.core.conditions import ConditionError, parse_condition
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.windows import WindowError, parse_window

# Ids (users, groups) seen in traffic follow the same rule, so every one is addressable
# from the CLI and the TOML.  \Z, not $: $ would accept a trailing newline.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-_]{0,127}\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")

ACTIONS = (
    "block",
    "change_model",
    "fallback",
    "limit_tokens",
    "check_output",
    "dataset",
    "retain",
    "capture",
)
USAGE_METRICS = ("cost_usd", "tokens", "input_tokens", "output_tokens", "requests")
PROVIDER_KINDS = ("openai", "mock")

Scalar = str | int | float | bool
Metadata = Mapping[str, Any]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    require_identity: bool = False
    timezone: str = "UTC"
    max_body_mb: float = 32.0
    unpriced_blocks: bool = False
    log_format: str = "text"
    metrics_user_labels: bool = False
    metrics_user_label_limit: int = 100


@dataclass(frozen=True)
class LedgerConfig:
    path: str | None = None
    store_content: bool = False
    queue_size: int = 10_000
    batch_size: int = 1_000
    flush_interval_ms: int = 500


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    kind: str = "openai"
    base_url: str | None = None
    api_key: str | None = None
    models: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 10.0
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True)
class Credits:
    usd: float
    window: str = "month"


@dataclass(frozen=True)
class UserConfig:
    id: str
    metadata: Metadata = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    credits: Credits | None = None
    added: str | None = None


@dataclass(frozen=True)
class GroupConfig:
    id: str
    metadata: Metadata = field(default_factory=dict)
    credits: Credits | None = None
    added: str | None = None


@dataclass(frozen=True)
class UsageTrigger:
    metric: str
    window: str
    over: float


@dataclass(frozen=True)
class ShareTrigger:
    max: float
    of: str = "credits"


@dataclass(frozen=True)
class RateTrigger:
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class RuleConfig:
    name: str
    action: str
    model: str | None = None
    usage: UsageTrigger | None = None
    share: ShareTrigger | None = None
    rate: RateTrigger | None = None
    to: str | None = None
    retries: int = 0
    max: int | None = None
    deny_regex: str | None = None
    moderation: str | None = None
    on_fail: str = "block"
    dataset: str | None = None
    days: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class RulesetConfig:
    name: str
    when: str
    rules: tuple[str, ...]
    priority: int = 0
    enabled: bool = True
    condition: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class KeyConfig:
    name: str
    hash: str
    created: str | None = None


@dataclass(frozen=True)
class OtelConfig:
    endpoint: str | None = None
    service_name: str = "waystone"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)
    users: Mapping[str, UserConfig] = field(default_factory=dict)
    groups: Mapping[str, GroupConfig] = field(default_factory=dict)
    rules: Mapping[str, RuleConfig] = field(default_factory=dict)
    rulesets: Mapping[str, RulesetConfig] = field(default_factory=dict)
    keys: Mapping[str, KeyConfig] = field(default_factory=dict)
    otel: OtelConfig = field(default_factory=OtelConfig)


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at ``path`` (a missing file is an empty config)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    return parse_config(parse_toml(text, str(path)))


def parse_toml(text: str, where: str = "config") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: invalid TOML: {err}") from err


# --- the validator --------------------------------------------------------------------


class _Table:
    """A TOML table being read: typed getters that name the path, unknown keys refused."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a table, got {_type_name(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        types_t = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in types_t:
            raise ConfigError(f"{self.at(key)}: expected {_names(types_t)}, got a boolean")
        if int in types_t and float in types_t and isinstance(value, int):
            return value
        if not isinstance(value, types_t):
            raise ConfigError(
                f"{self.at(key)}: expected {_names(types_t)}, got {_type_name(value)}"
            )
        return value

    def table(self, key: str) -> _Table:
        self.seen.add(key)
        return _Table(self.data.get(key, {}), self.at(key))

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise ConfigError(f"{self.at(key)}[{i}]: expected a string, got {_type_name(v)}")
        return tuple(values)

    def str_map(self, key: str) -> dict[str, str]:
        sub = self.table(key)
        for k, v in sub.data.items():
            if not isinstance(v, str):
                raise ConfigError(f"{sub.at(k)}: expected a string, got {_type_name(v)}")
        return dict(sub.data)

    def done(self) -> None:
        for key in self.data:
            if key not in self.seen:
                raise ConfigError(f"{self.at(key)}: unknown key")


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _names(types: tuple[type, ...]) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    if int in types and float in types:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def parse_config(data: Mapping[str, Any]) -> Config:
    root = _Table(dict(data), "")
    server = _server(root.table("server"))
    ledger = _ledger(root.table("ledger"))
    providers = _each(root.table("providers"), _provider)
    prices = _each(root.table("prices"), _price)
    groups = _each(root.table("groups"), _group)
    users = _each(root.table("users"), _user)
    rules = _each(root.table("rules"), _rule)
    rulesets = _each(root.table("rulesets"), _ruleset)
    keys = _each(root.table("keys"), _key)
    otel = _otel(root.table("otel"))
    root.done()
    config = Config(server, ledger, providers, prices, users, groups, rules, rulesets, keys, otel)
    _cross_check(config)
    return config


def _each(table: _Table, build: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in table.data:
        table.seen.add(name)
        out[name] = build(name, _Table(table.data[name], table.at(_key_path(name))))
    return out


def _key_path(name: str) -> str:
    return name if NAME_RE.match(name) and "." not in name else f'"{name}"'


def _server(t: _Table) -> ServerConfig:
    d = ServerConfig()
    s = ServerConfig(
        host=t.get("host", str, d.host),
        port=t.get("port", int, d.port),
        require_identity=t.get("require_identity", bool, d.require_identity),
        timezone=t.get("timezone", str, d.timezone),
        max_body_mb=float(t.get("max_body_mb", (int, float), d.max_body_mb)),
        unpriced_blocks=t.get("unpriced_blocks", bool, d.unpriced_blocks),
        log_format=t.get("log_format", str, d.log_format),
        metrics_user_labels=t.get("metrics_user_labels", bool, d.metrics_user_labels),
        metrics_user_label_limit=t.get("metrics_user_label_limit", int, d.metrics_user_label_limit),
    )
    t.done()
    if not 0 < s.port < 65536:
        raise ConfigError(f"{t.at('port')}: must be between 1 and 65535")
    if s.max_body_mb <= 0:
        raise ConfigError(f"{t.at('max_body_mb')}: must be positive")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f'{t.at("log_format")}: must be "text" or "json"')
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(s.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f'{t.at("timezone")}: unknown time zone "{s.timezone}"') from err
    return s


def _ledger(t: _Table) -> LedgerConfig:
    d = LedgerConfig()
    c = LedgerConfig(
        path=t.get("path", str, None),
        store_content=t.get("store_content", bool, d.store_content),
        queue_size=t.get("queue_size", int, d.queue_size),
        batch_size=t.get("batch_size", int, d.batch_size),
        flush_interval_ms=t.get("flush_interval_ms", int, d.flush_interval_ms),
    )
    t.done()
    for key in ("queue_size", "batch_size", "flush_interval_ms"):
        if getattr(c, key) <= 0:
            raise ConfigError(f"{t.at(key)}: must be positive")
    if c.flush_interval_ms > 1000:
        raise ConfigError(
            f"{t.at('flush_interval_ms')}: must be at most 1000 (rows reach disk within a second)"
        )
    return c


def _provider(name: str, t: _Table) -> ProviderConfig:
    if not NAME_RE.match(name) or "/" in name:
        raise ConfigError(f"{t.path}: invalid provider name")
    p = ProviderConfig(
        name=name,
        kind=t.get("kind", str, "openai"),
        base_url=t.get("base_url", str, None),
        api_key=t.get("api_key", str, None),
        models=t.str_list("models"),
        headers=t.str_map("headers"),
        connect_timeout_s=float(t.get("connect_timeout_s", (int, float), 10.0)),
        timeout_s=float(t.get("timeout_s", (int, float), 600.0)),
    )
    t.done()
    if p.kind not in PROVIDER_KINDS:
        raise ConfigError(f"{t.at('kind')}: must be one of {', '.join(PROVIDER_KINDS)}")
    if p.kind == "openai" and not p.base_url:
        raise ConfigError(f"{t.path}: base_url is required")
    if p.base_url and not p.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{t.at('base_url')}: must start with http:// or https://")
    if p.api_key is not None and p.api_key.startswith("env:") and len(p.api_key) == 4:
        raise ConfigError(f"{t.at('api_key')}: env: needs a variable name")
    for i, model in enumerate(p.models):
        if not model or "/" in model and model.startswith("/"):
            raise ConfigError(f"{t.at('models')}[{i}]: invalid model name")
    return p


def _price(name: str, t: _Table) -> Price:
    p = Price(
        input=float(t.get("input", (int, float), 0.0)),
        output=float(t.get("output", (int, float), 0.0)),
        cached_input=_opt_float(t.get("cached_input", (int, float), None)),
        reasoning=_opt_float(t.get("reasoning", (int, float), None)),
    )
    if "input" not in t.data and "output" not in t.data:
        raise ConfigError(f"{t.path}: needs input and/or output (USD per million tokens)")
    t.done()
    for key in ("input", "output", "cached_input", "reasoning"):
        value = getattr(p, key)
        if value is not None and value < 0:
            raise ConfigError(f"{t.at(key)}: must not be negative")
    return p


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _credits(t: _Table) -> Credits | None:
    if "credits" not in t.data:
        t.seen.add("credits")
        return None
    c = t.table("credits")
    credits = Credits(
        usd=float(c.get("usd", (int, float), 0.0)), window=c.get("window", str, "month")
    )
    if "usd" not in c.data:
        raise ConfigError(f"{c.path}: usd is required")
    c.done()
    if credits.usd < 0:
        raise ConfigError(f"{c.at('usd')}: must not be negative")
    _check_window(credits.window, c.at("window"))
    return credits


def _metadata(t: _Table) -> dict[str, Any]:
    meta = t.table("metadata")
    for k, v in meta.data.items():
        if isinstance(v, (dict, list)):
            raise ConfigError(f"{meta.at(k)}: metadata values must be scalars")
    return dict(meta.data)


def _user(uid: str, t: _Table) -> UserConfig:
    _check_id(uid, t.path)
    u = UserConfig(
        id=uid,
        metadata=_metadata(t),
        groups=t.str_list("groups"),
        credits=_credits(t),
        added=_opt_text(t.get("added", (str, *_DATES), None)),
    )
    t.done()
    return u


def _group(gid: str, t: _Table) -> GroupConfig:
    _check_id(gid, t.path)
    g = GroupConfig(
        id=gid,
        metadata=_metadata(t),
        credits=_credits(t),
        added=_opt_text(t.get("added", (str, *_DATES), None)),
    )
    t.done()
    return g


def _opt_text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else value.isoformat()


def _check_id(ident: str, path: str) -> None:
    if not ID_RE.match(ident):
        raise ConfigError(f"{path}: invalid id (letters, digits and ._@:+-_ up to 128 characters)")


def _check_window(window: str, path: str) -> None:
    try:
        parse_window(window)
    except WindowError as err:
        raise ConfigError(f"{path}: {err}") from err


_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "block": ("message",),
    "change_model": ("to",),
    "fallback": ("to", "retries"),
    "limit_tokens": ("max",),
    "check_output": ("deny_regex", "moderation", "on_fail"),
    "dataset": ("name",),
    "retain": ("days",),
    "capture": (),
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


def _rule(name: str, t: _Table) -> RuleConfig:
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


def _check_rule_values(rule: RuleConfig, t: _Table) -> None:
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


def _usage(t: _Table) -> UsageTrigger | None:
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
    _check_window(window, u.at("window"))
    if over < 0:
        raise ConfigError(f"{u.at('over')}: must not be negative")
    return UsageTrigger(metric=metric, window=window, over=float(over))


def _share(t: _Table) -> ShareTrigger | None:
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


def _rate(t: _Table) -> RateTrigger | None:
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


def _ruleset(name: str, t: _Table) -> RulesetConfig:
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


def _key(name: str, t: _Table) -> KeyConfig:
    if not NAME_RE.match(name):
        raise ConfigError(f"{t.path}: invalid key name")
    key_hash = t.get("hash", str, None)
    if not key_hash:
        raise ConfigError(f"{t.path}: hash is required")
    k = KeyConfig(
        name=name, hash=key_hash, created=_opt_text(t.get("created", (str, *_DATES), None))
    )
    t.done()
    return k


def _otel(t: _Table) -> OtelConfig:
    o = OtelConfig(
        endpoint=t.get("endpoint", str, None),
        service_name=t.get("service_name", str, "waystone"),
        headers=t.str_map("headers"),
    )
    t.done()
    return o


def _cross_check(config: Config) -> None:
    for uid, user in config.users.items():
        for i, gid in enumerate(user.groups):
            if gid not in config.groups:
                raise ConfigError(f'users.{_key_path(uid)}.groups[{i}]: no group named "{gid}"')
    for name, rs in config.rulesets.items():
        for i, rule_name in enumerate(rs.rules):
            if rule_name not in config.rules:
                raise ConfigError(
                    f'rulesets.{_key_path(name)}.rules[{i}]: no rule named "{rule_name}"'
                )
    for name, rule in config.rules.items():
        for key in ("to", "moderation"):
            target = getattr(rule, key)
            if target and "/" in target and target.split("/", 1)[0] not in config.providers:
                raise ConfigError(
                    f'rules.{_key_path(name)}.{key}: no provider named "{target.split("/", 1)[0]}"'
                )


def _date_types() -> tuple[type, ...]:
    import datetime

    return (datetime.date, datetime.datetime)


_DATES = _date_types()
