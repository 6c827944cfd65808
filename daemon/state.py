"""The daemon's state: typed app keys and the immutable config snapshot.

A ``Snapshot`` bundles a validated ``Config`` with what is derived from it (the price
table, the gateway key hashes).  A reload builds a new snapshot and replaces the old
one in one assignment, so a request sees one consistent config from start to end.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from daemon.providers.http_client import HttpClient
from daemon.providers.kinds import Provider, providers_of
from waystone_cli.core.config import Config
from waystone_cli.core.models import ModelIndex
from waystone_cli.core.policy import PolicyPlan, compile_plan
from waystone_cli.core.pricing import Pricer
from waystone_cli.core.secrets import Redactor, config_secrets

if TYPE_CHECKING:
    from daemon.alerts.outbox import Outbox
    from daemon.counters.store import CounterStore
    from daemon.request.entities import EntityStore
    from daemon.telemetry.observe import Observer
    from waystone_cli.core.counters import UsageCounters
    from waystone_cli.ledger.writer import LedgerWriter


@dataclass(frozen=True)
class Settings:
    """How the daemon was started; everything else comes from the config file."""

    config_path: Path
    ledger_path: Path
    socket_path: Path | None
    host: str | None = None
    port: int | None = None
    log_format: str | None = None
    watch_interval_s: float = 0.5
    # Which worker of ``serve --workers`` this is, from 1; 0: a daemon alone.
    worker: int = 0
    # How often the instance's row in the ledger is refreshed (``daemon.process.heartbeat``).
    heartbeat_interval_s: float = 5.0
    # The first retry of an alert that was not delivered; each next one waits twice as
    # long, up to ``daemon.alerts.delivery.MAX_RETRY_S``.
    alert_retry_s: float = 1.0


@dataclass(frozen=True)
class Snapshot:
    config: Config
    pricer: Pricer
    models: ModelIndex
    key_hashes: tuple[bytes, ...] = field(default=())
    # Whether any rule has a rate trigger: only then do the counters keep rate windows.
    rates: bool = True
    # What provider text is cleaned with before it leaves the gateway (core/secrets.py).
    redactor: Redactor = field(default=Redactor())
    # The provider objects, by name: the one place a provider's kind is looked at.
    providers: Mapping[str, Provider] = field(default_factory=dict)
    # The config's rulesets compiled for decide(); None compiles them on each call.
    policy: PolicyPlan | None = None

    @classmethod
    def build(cls, config: Config) -> Snapshot:
        hashes = tuple(_digest_of(k.hash) for k in config.keys.values())
        pricer = Pricer(
            config.prices,
            base_urls={name: p.base_url for name, p in config.providers.items()},
            on_unpriced=_warn_unpriced,
        )
        # Before the snapshot serves (at start, before the daemon listens; on reload,
        # before the swap): the first request would otherwise import genai-prices.
        pricer.warm((name, m) for name, p in config.providers.items() for m in p.models)
        return cls(
            config=config,
            pricer=pricer,
            models=ModelIndex.from_config(config),
            key_hashes=hashes,
            rates=any(rule.rate is not None for rule in config.rules.values()),
            redactor=Redactor.of(config_secrets(config, os.environ)),
            providers=providers_of(config),
            policy=compile_plan(config),
        )

    def key_allowed(self, presented: str) -> bool:
        """Constant-time comparison of the presented key's hash with every stored hash."""
        digest = hashlib.sha256(presented.encode()).digest()
        allowed = False
        for stored in self.key_hashes:
            allowed |= hmac.compare_digest(stored, digest)
        return allowed


def _warn_unpriced(provider: str, model: str) -> None:
    logging.getLogger("waystone.pricing").warning(
        'no price known for %s/%s: its requests are recorded as unpriced (add [prices."%s/%s"])',
        provider,
        model,
        provider,
        model,
    )


def _digest_of(stored: str) -> bytes:
    algo, _, hexdigest = stored.partition(":")
    if algo != "sha256":
        return b""
    try:
        return bytes.fromhex(hexdigest)
    except ValueError:
        return b""


class ConfigHolder:
    """The one mutable cell: the snapshot in force."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self.last_error: str | None = None


SETTINGS = web.AppKey("settings", Settings)
CONFIG = web.AppKey("config", ConfigHolder)
# The address the daemon listens on, fixed at start (a reload does not rebind): a
# reload is checked against it, not against the new file's [server] host.
LISTEN_HOST = web.AppKey("listen_host", str)
HTTP = web.AppKey("http", HttpClient)
# Typed by annotation: the classes are imported only for the type checker, which keeps
# this module free of import cycles (the observer's modules read these keys).
LEDGER: web.AppKey[LedgerWriter] = web.AppKey("ledger")
ENTITIES: web.AppKey[EntityStore] = web.AppKey("entities")
COUNTERS: web.AppKey[UsageCounters] = web.AppKey("counters")
# Where requests reserve and settle: the counters above, or Redis (``daemon/counters``).
STORE: web.AppKey[CounterStore] = web.AppKey("counter_store")
OBSERVER: web.AppKey[Observer] = web.AppKey("observer")
ALERTS: web.AppKey[Outbox] = web.AppKey("alerts")
