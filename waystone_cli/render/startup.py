"""What ``waystone serve`` prints before it listens: the things an operator checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from waystone_cli.core.config import Config, ProviderConfig


@dataclass(frozen=True)
class StartupFacts:
    config: Config
    config_path: Path
    ledger_path: Path
    socket_path: Path | None
    url: str
    version: str
    # The workers' names under ``serve --workers N`` (N > 1); empty for one daemon.
    workers: Sequence[str] = ()


def startup_lines(facts: StartupFacts) -> list[str]:
    config = facts.config
    exists = facts.config_path.exists()
    pairs = [
        ("config", str(facts.config_path) + ("" if exists else " (no file: defaults)")),
        ("ledger", _ledger(facts)),
        ("socket", str(facts.socket_path) if facts.socket_path else "none"),
        *_listed("providers", [_provider(p) for p in config.providers.values()]),
        *_listed("rulesets", [_ruleset(name, config) for name in config.rulesets]),
        ("auth", _auth(config)),
        *(
            [("workers", f"{len(facts.workers)}: {', '.join(facts.workers)}")]
            if facts.workers
            else []
        ),
    ]
    width = max(len(label) for label, _ in pairs)
    lines = [f"waystone {facts.version} serving {facts.url}"]
    lines.extend(f"  {label.ljust(width)}  {text}" for label, text in pairs)
    return lines


def _ledger(facts: StartupFacts) -> str:
    url = facts.config.ledger.url
    if url is None:
        return str(facts.ledger_path)
    from waystone_cli.ledger.postgres import hide_password

    return f"postgres {hide_password(url)}"


def startup_warnings(facts: StartupFacts) -> list[str]:
    """Problems that make a fresh start serve nothing useful."""
    warnings = []
    if not facts.config_path.exists():
        warnings.append(f"no config file at {facts.config_path} (create one with `waystone init`)")
    if not facts.config.providers:
        warnings.append(
            "no provider configured: every model request will be refused "
            "(add one with `waystone provider add`)"
        )
    return warnings


def _listed(label: str, items: Sequence[str]) -> list[tuple[str, str]]:
    if not items:
        return [(label, "none")]
    return [(label if i == 0 else "", item) for i, item in enumerate(items)]


def _provider(provider: ProviderConfig) -> str:
    kind = f" ({provider.kind})" if provider.kind != "openai" else ""
    models = ", ".join(provider.models) if provider.models else "any model"
    return f"{provider.name}{kind}: {models}"


def _ruleset(name: str, config: Config) -> str:
    ruleset = config.rulesets[name]
    state = "" if ruleset.enabled else ", disabled"
    return f"{name} (when {ruleset.when}; {', '.join(ruleset.rules)}{state})"


def _auth(config: Config) -> str:
    if config.keys:
        count = len(config.keys)
        return f"gateway keys ({count} key{'' if count == 1 else 's'})"
    return "no gateway keys: loopback only"
