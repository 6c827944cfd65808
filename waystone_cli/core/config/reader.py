"""Reading the config file into a ``Config``: the loaders, typed getters that name TOML
paths, one builder per section, and the cross-checks between sections.

``parse_config(data)`` takes the dict ``tomllib`` produced and returns a ``Config`` or
raises ``ConfigError`` whose message names the TOML path of the first problem, e.g.
``rulesets.free-tier.rules[1]: no rule named "cap-10"``.  Unknown keys are errors.
Rules and rulesets are read by ``rules``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from waystone_cli.core.config.alerts import alerts_config
from waystone_cli.core.config.entities import group_config, user_config
from waystone_cli.core.config.lines import line_of
from waystone_cli.core.config.rules import rule_config, ruleset_config
from waystone_cli.core.config.snapshot import (
    NAME_RE,
    ON_REDIS_ERROR,
    PG_BATCH_SIZE,
    PROVIDER_KINDS,
    REQUEST_METADATA,
    ClusterConfig,
    Config,
    KeyConfig,
    LedgerConfig,
    OtelConfig,
    Price,
    ProviderConfig,
    ServerConfig,
    is_listen_host,
)
from waystone_cli.core.config.table import Table, check_id
from waystone_cli.core.errors import ConfigError

# The smallest buffer pool ``ledger.memory_limit_mb`` accepts: much below it DuckDB
# fails statements it cannot spill to disk.
MIN_MEMORY_LIMIT_MB = 16


def build_config(data: Mapping[str, Any]) -> Config:
    """Validate the TOML dict whole into a Config (see ``parse_config``)."""
    root = Table(dict(data), "")
    server = _server(root.table("server"))
    ledger = _ledger(root.table("ledger"))
    providers = _each(root.table("providers"), _provider)
    prices = _each(root.table("prices"), _price)
    groups = _each(root.table("groups"), group_config)
    users = _each(root.table("users"), user_config)
    rules = _each(root.table("rules"), rule_config)
    rulesets = _each(root.table("rulesets"), ruleset_config)
    keys = _each(root.table("keys"), _key)
    otel = _otel(root.table("otel"))
    cluster = _cluster(root.table("cluster"))
    alerts = alerts_config(root.table("alerts"))
    root.done()
    config = Config(
        server=server,
        ledger=ledger,
        providers=providers,
        prices=prices,
        users=users,
        groups=groups,
        rules=rules,
        rulesets=rulesets,
        keys=keys,
        otel=otel,
        cluster=cluster,
        alerts=alerts,
    )
    _cross_check(config)
    return config


def _each(table: Table, build: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in table.data:
        table.seen.add(name)
        out[name] = build(name, Table(table.data[name], table.at(_key_path(name))))
    return out


def _key_path(name: str) -> str:
    return name if NAME_RE.match(name) and "." not in name else f'"{name}"'


def _server(t: Table) -> ServerConfig:
    d = ServerConfig()
    s = ServerConfig(
        host=t.get("host", str, d.host),
        port=t.get("port", int, d.port),
        require_identity=t.get("require_identity", bool, d.require_identity),
        timezone=t.get("timezone", str, d.timezone),
        max_body_mb=float(t.get("max_body_mb", (int, float), d.max_body_mb)),
        max_response_mb=float(t.get("max_response_mb", (int, float), d.max_response_mb)),
        unpriced_blocks=t.get("unpriced_blocks", bool, d.unpriced_blocks),
        log_format=t.get("log_format", str, d.log_format),
        metrics_user_labels=t.get("metrics_user_labels", bool, d.metrics_user_labels),
        metrics_user_label_limit=t.get("metrics_user_label_limit", int, d.metrics_user_label_limit),
        request_metadata=t.get("request_metadata", str, d.request_metadata),
        metrics_public=t.get("metrics_public", bool, d.metrics_public),
        client_timeout_s=float(t.get("client_timeout_s", (int, float), d.client_timeout_s)),
    )
    t.done()
    if not 0 < s.port < 65536:
        raise ConfigError(f"{t.at('port')}: must be between 1 and 65535")
    if not is_listen_host(s.host):
        raise ConfigError(f'{t.at("host")}: "{s.host}" is not an IP address or host name')
    for key in ("max_body_mb", "max_response_mb"):
        if not getattr(s, key) > 0:
            raise ConfigError(f"{t.at(key)}: must be positive")
    if not 0 < s.client_timeout_s < math.inf:
        raise ConfigError(f"{t.at('client_timeout_s')}: must be a positive number of seconds")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f'{t.at("log_format")}: must be "text" or "json"')
    if s.request_metadata not in REQUEST_METADATA:
        raise ConfigError(f'{t.at("request_metadata")}: must be "merge" or "ignore"')
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(s.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f'{t.at("timezone")}: unknown time zone "{s.timezone}"') from err
    return s


def _ledger(t: Table) -> LedgerConfig:
    d = LedgerConfig()
    url = t.get("url", str, None)
    c = LedgerConfig(
        path=t.get("path", str, None),
        store_content=t.get("store_content", bool, d.store_content),
        queue_size=t.get("queue_size", int, d.queue_size),
        batch_size=t.get("batch_size", int, d.batch_size if url is None else PG_BATCH_SIZE),
        flush_interval_ms=t.get("flush_interval_ms", int, d.flush_interval_ms),
        memory_limit_mb=t.get("memory_limit_mb", int, d.memory_limit_mb),
        url=url,
    )
    t.done()
    if c.url is not None and not c.url.startswith(("postgresql://", "postgres://", "env:")):
        raise ConfigError(f'{t.at("url")}: must be "postgresql://…" or "env:NAME"')
    for key in ("queue_size", "batch_size", "flush_interval_ms"):
        if getattr(c, key) <= 0:
            raise ConfigError(f"{t.at(key)}: must be positive")
    if c.flush_interval_ms > 1000:
        raise ConfigError(
            f"{t.at('flush_interval_ms')}: must be at most 1000 (rows reach disk within a second)"
        )
    if c.memory_limit_mb < MIN_MEMORY_LIMIT_MB:
        raise ConfigError(
            f"{t.at('memory_limit_mb')}: must be at least {MIN_MEMORY_LIMIT_MB}"
            " (DuckDB needs room for a batch, the rollup's fold and reports)"
        )
    return c


def _provider(name: str, t: Table) -> ProviderConfig:
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
        idle_timeout_s=float(t.get("idle_timeout_s", (int, float), 300.0)),
    )
    t.done()
    for key in ("connect_timeout_s", "timeout_s", "idle_timeout_s"):
        if not getattr(p, key) > 0:
            raise ConfigError(f"{t.at(key)}: must be positive")
    if p.kind not in PROVIDER_KINDS:
        raise ConfigError(f"{t.at('kind')}: must be one of {', '.join(PROVIDER_KINDS)}")
    if p.kind in ("openai", "anthropic") and not p.base_url:
        raise ConfigError(f"{t.path}: base_url is required")
    if p.base_url and not p.base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{t.at('base_url')}: must start with http:// or https://")
    if p.api_key is not None and p.api_key.startswith("env:") and len(p.api_key) == 4:
        raise ConfigError(f"{t.at('api_key')}: env: needs a variable name")
    for i, model in enumerate(p.models):
        if not model or "/" in model and model.startswith("/"):
            raise ConfigError(f"{t.at('models')}[{i}]: invalid model name")
    return p


def _price(name: str, t: Table) -> Price:
    p = Price(
        input=float(t.get("input", (int, float), 0.0)),
        output=float(t.get("output", (int, float), 0.0)),
        cached_input=_opt_float(t.get("cached_input", (int, float), None)),
        reasoning=_opt_float(t.get("reasoning", (int, float), None)),
        cache_write=_opt_float(t.get("cache_write", (int, float), None)),
        cache_write_1h=_opt_float(t.get("cache_write_1h", (int, float), None)),
    )
    if "input" not in t.data and "output" not in t.data:
        raise ConfigError(f"{t.path}: needs input and/or output (USD per million tokens)")
    t.done()
    for key in ("input", "output", "cached_input", "reasoning", "cache_write", "cache_write_1h"):
        value = getattr(p, key)
        if value is not None and value < 0:
            raise ConfigError(f"{t.at(key)}: must not be negative")
    return p


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _key(name: str, t: Table) -> KeyConfig:
    if not NAME_RE.match(name):
        raise ConfigError(f"{t.path}: invalid key name")
    key_hash = t.get("hash", str, None)
    if not key_hash:
        raise ConfigError(f"{t.path}: hash is required")
    k = KeyConfig(name=name, hash=key_hash, created=t.date_text("created"))
    t.done()
    return k


def _cluster(t: Table) -> ClusterConfig:
    d = ClusterConfig()
    c = ClusterConfig(
        redis_url=t.get("redis_url", str, None),
        on_redis_error=t.get("on_redis_error", str, d.on_redis_error),
        instance=t.get("instance", str, None),
        reservation_expiry_s=float(
            t.get("reservation_expiry_s", (int, float), d.reservation_expiry_s)
        ),
    )
    t.done()
    if c.redis_url is not None and not c.redis_url.startswith(
        ("redis://", "rediss://", "unix://", "env:")
    ):
        raise ConfigError(f'{t.at("redis_url")}: must be "redis://…" or "env:NAME"')
    if c.on_redis_error not in ON_REDIS_ERROR:
        raise ConfigError(f"{t.at('on_redis_error')}: must be one of {', '.join(ON_REDIS_ERROR)}")
    if c.instance is not None:
        check_id(c.instance, t.at("instance"))
    if c.reservation_expiry_s <= 0:
        raise ConfigError(f"{t.at('reservation_expiry_s')}: must be a positive number of seconds")
    return c


def _otel(t: Table) -> OtelConfig:
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
    _check_targets(config)


def _check_targets(config: Config) -> None:
    """Every model a rule sends traffic to resolves the way a request naming it would, so
    a typo or a removed provider fails here, not on live traffic."""
    from waystone_cli.core.models import crossing_targets, unserved_targets

    for lost in [
        *unserved_targets(config.rules, config.providers),
        *crossing_targets(config.rules, config.providers),
    ]:
        raise ConfigError(f"rules.{_key_path(lost.rule)}.{lost.field}: {lost.reason}")


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at ``path`` (a missing file is an empty config)."""
    text = read_config_text(path)
    return Config() if text is None else parse_config_text(text, str(path))[1]


def read_config_text(path: Path) -> str | None:
    """The config file's text, or None if there is no file; a file that cannot be read
    or is not UTF-8 is a ConfigError (TOML is UTF-8 by definition)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from err


# Sections that validate without the others, each taken alone by ``salvage_config``.
_STANDALONE = (
    ("server",),
    ("ledger",),
    ("cluster",),
    ("alerts",),
    ("providers",),
    ("prices",),
    ("users", "groups"),
)


def salvage_config(path: Path) -> Config:
    """What an invalid config file still says on its own: each of ``_STANDALONE`` that
    validates alone, defaults for the rest.  Commands that only read the ledger use it,
    so a typo in a rule does not hide the usage reports (or the ledger's path)."""
    try:
        data = parse_toml(read_config_text(path) or "", str(path))
    except ConfigError:
        return Config()
    parts: dict[str, Any] = {}
    for sections in _STANDALONE:
        try:
            config = parse_config({s: data[s] for s in sections if s in data})
        except ConfigError:
            continue
        parts.update({s: getattr(config, s) for s in sections})
    return Config(**parts)


def parse_config_text(text: str, where: str) -> tuple[dict[str, Any], Config]:
    """The TOML dict and its snapshot; a validation error also names the file's line."""
    data = parse_toml(text, where)
    try:
        return data, parse_config(data)
    except ConfigError as err:
        line = line_of(text, str(err).split(": ", 1)[0])
        if line is None:
            raise
        raise ConfigError(f"{err} (line {line})") from err


def parse_toml(text: str, where: str = "config") -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: invalid TOML: {err}") from err
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively.
        raise ConfigError(f"{where}: invalid TOML: nested too deeply") from None


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate the TOML dict whole; a ConfigError names the TOML path of the first problem."""
    return build_config(data)
