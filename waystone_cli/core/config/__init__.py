"""The config: one immutable, fully validated snapshot read from the TOML file.

``snapshot`` holds the frozen dataclasses, ``reader`` reads and validates the TOML into
them (``rules`` and ``table`` help it; ``lines`` finds a TOML path's line), ``warnings``
says what a valid config may still get wrong.  The names other code uses are here.
"""

from waystone_cli.core.config.reader import (
    load_config,
    parse_config,
    parse_config_text,
    parse_toml,
    read_config_text,
    salvage_config,
)
from waystone_cli.core.config.snapshot import (
    ACTIONS,
    ID_RE,
    NAME_RE,
    ON_REDIS_ERROR,
    PROVIDER_KINDS,
    REQUEST_METADATA,
    USAGE_METRICS,
    ClusterConfig,
    Config,
    Credits,
    GroupConfig,
    KeyConfig,
    LedgerConfig,
    OtelConfig,
    Price,
    ProviderConfig,
    RateTrigger,
    RuleConfig,
    RulesetConfig,
    ServerConfig,
    ShareTrigger,
    UsageTrigger,
    UserConfig,
    is_listen_host,
)

__all__ = [
    "ACTIONS",
    "ID_RE",
    "ON_REDIS_ERROR",
    "NAME_RE",
    "PROVIDER_KINDS",
    "REQUEST_METADATA",
    "USAGE_METRICS",
    "ClusterConfig",
    "Config",
    "Credits",
    "GroupConfig",
    "KeyConfig",
    "LedgerConfig",
    "OtelConfig",
    "Price",
    "ProviderConfig",
    "RateTrigger",
    "RuleConfig",
    "RulesetConfig",
    "ServerConfig",
    "ShareTrigger",
    "UsageTrigger",
    "UserConfig",
    "is_listen_host",
    "load_config",
    "parse_config",
    "parse_config_text",
    "parse_toml",
    "read_config_text",
    "salvage_config",
]
