"""The config snapshot: frozen dataclasses built from the TOML file, validated whole
by ``reader``.  A snapshot never changes; a reload builds a new one and swaps it in one
step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from waystone_cli.core.windows import parse_duration

# Ids (users, groups) seen in traffic follow the same rule, so every one is addressable
# from the CLI and the TOML.  \Z, not $: $ would accept a trailing newline.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+\-_]{0,127}\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")

# A host name as RFC 1123 spells one: dot-separated labels of letters, digits and inner dashes.
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)


def is_listen_host(host: str) -> bool:
    """An IP address or a host name the daemon can bind to."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(HOSTNAME_RE.match(host))
    return True


ACTIONS = (
    "block",
    "change_model",
    "fallback",
    "limit_tokens",
    "check_output",
    "dataset",
    "retain",
    "capture",
    "flag",
)
USAGE_METRICS = ("cost_usd", "tokens", "input_tokens", "output_tokens", "requests")
PROVIDER_KINDS = ("openai", "mock", "anthropic")
REQUEST_METADATA = ("merge", "ignore")

Scalar = str | int | float | bool
Metadata = Mapping[str, Any]


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    require_identity: bool = False
    timezone: str = "UTC"
    max_body_mb: float = 32.0
    max_response_mb: float = 64.0
    unpriced_blocks: bool = False
    log_format: str = "text"
    metrics_user_labels: bool = False
    metrics_user_label_limit: int = 100
    # "ignore": only the metadata the admin declared counts, not what requests send.
    request_metadata: str = "merge"
    # False: with gateway keys configured, /metrics asks for one like the API does.
    metrics_public: bool = False
    # Seconds a client connection may go without sending complete request headers:
    # after it opens (slowly sent headers) and after each answer (idle keep-alive).
    client_timeout_s: float = 30.0

    @property
    def merges_request_metadata(self) -> bool:
        return self.request_metadata == "merge"

    @property
    def max_response_bytes(self) -> int:
        return int(self.max_response_mb * (1 << 20))


@dataclass(frozen=True)
class LedgerConfig:
    path: str | None = None
    store_content: bool = False
    queue_size: int = 10_000
    batch_size: int = 1_000
    flush_interval_ms: int = 500
    memory_limit_mb: int = 32  # DuckDB's buffer pool (ledger.connection.bound_memory)
    # A Postgres ledger shared by several instances ("postgresql://…" or "env:NAME");
    # None: the DuckDB file at ``path``.
    url: str | None = None


# A Postgres ledger's default batch: a COPY of 5,000 rows costs little more than one of 1,000
# (the round trip and the rollup upsert are per batch), and a batch is only that large when
# that many rows wait, so a quiet gateway still writes within ``flush_interval_ms``.
PG_BATCH_SIZE = 5_000

ON_REDIS_ERROR = ("block", "local")


@dataclass(frozen=True)
class ClusterConfig:
    """How instances share counters (SPEC §12); the defaults are one instance alone."""

    # "redis://HOST:PORT/DB" or "env:NAME"; None: counters in memory.
    redis_url: str | None = None
    # "block": 503 cluster_unavailable for requests a counter rule applies to, while
    # Redis is unreachable; "local": in-memory counters until it is back.
    on_redis_error: str = "block"
    # This instance's name; None: $WAYSTONE_INSTANCE, else host-pid (``instance_name``).
    instance: str | None = None
    # How long a reservation in Redis is held without being settled: a crashed
    # instance's requests stop holding the budget then (the in-memory counters' 15 min).
    reservation_expiry_s: float = 900.0


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
    idle_timeout_s: float = 300.0


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    cache_write: float | None = None  # a cache write kept five minutes (default: input)
    cache_write_1h: float | None = None  # kept an hour (default: cache_write)


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
class SpikeTrigger:
    """``spike = {metric, window, factor, baseline, min}`` (see ``core/spike.py``)."""

    metric: str
    window: str  # rolling
    factor: float
    baseline: str  # rolling, longer than ``window``
    min: float = 0.0

    # Derived once per snapshot (validated at load), so a request only reads them.
    @cached_property
    def window_s(self) -> float:
        return _seconds(self.window)

    @cached_property
    def windows(self) -> float:
        """Baseline windows before the current one: ``baseline / window - 1``."""
        return _seconds(self.baseline) / self.window_s - 1


def _seconds(window: str) -> float:
    return parse_duration(window).total_seconds()


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
    spike: SpikeTrigger | None = None
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


DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)


@dataclass(frozen=True)
class AlertsConfig:
    """Where threshold, spike and unpriced-model events are posted (SPEC §14).

    No ``webhook``: alerts are off (nothing is recorded).  Deliveries are kept until
    delivered, so there is no attempt limit; ``timeout_s`` bounds one attempt."""

    webhook: str | None = None
    # The HMAC key of X-Waystone-Signature, or "env:NAME"; None: events go unsigned.
    secret: str | None = None
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    timeout_s: float = 10.0


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
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
