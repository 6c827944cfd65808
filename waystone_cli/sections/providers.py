"""The ``[providers]`` section as ``waystone provider`` adds, changes, removes and lists it.

Removing a provider or one of its models is refused while a rule's target (``to``,
``moderation``) would no longer resolve, naming every such rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from waystone_cli.configstore import Document
from waystone_cli.core.config import parse_config
from waystone_cli.core.errors import NotFoundError, WaystoneError
from waystone_cli.core.models import unserved_targets
from waystone_cli.sections import add_entry, find_entry

if TYPE_CHECKING:
    from waystone_cli.core.config import Config, ProviderConfig


def provider_entry(
    kind: str, base_url: str | None, api_key_env: str | None, models: Sequence[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if kind != "openai":
        entry["kind"] = kind
    if base_url is not None:
        entry["base_url"] = base_url
    if api_key_env is not None:
        entry["api_key"] = f"env:{api_key_env.removeprefix('env:')}"
    entry["models"] = list(dict.fromkeys(models))
    return entry


def add_provider(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    add_entry(doc, "providers", "provider", name, entry)


@dataclass(frozen=True)
class ProviderChange:
    base_url: str | None = None
    api_key_env: str | None = None
    add_models: Sequence[str] = ()
    rm_models: Sequence[str] = ()

    def is_empty(self) -> bool:
        return (
            self.base_url is None
            and self.api_key_env is None
            and not self.add_models
            and not self.rm_models
        )


def change_provider(doc: Document, name: str, change: ProviderChange) -> None:
    entry = _entry(doc, name)
    if change.base_url is not None:
        entry["base_url"] = change.base_url
    if change.api_key_env is not None:
        entry["api_key"] = f"env:{change.api_key_env.removeprefix('env:')}"
    models = list(entry.get("models", []))
    for model in change.rm_models:
        if model not in models:
            raise NotFoundError(f'provider "{name}" does not list model "{model}"')
        models.remove(model)
    models.extend(m for m in change.add_models if m not in models)
    if change.rm_models:
        _refuse_dropped_models(doc, name, models, change.rm_models)
    entry["models"] = models


def _refuse_dropped_models(
    doc: Document, name: str, models: Sequence[str], dropped: Sequence[str]
) -> None:
    if not models:
        # An empty list means "any model": removing the last one would widen the provider.
        raise WaystoneError(
            f'provider "{name}" would have no models left (an empty list serves any model)'
        )
    config = parse_config(doc)
    after = {**config.providers, name: replace(config.providers[name], models=tuple(models))}
    listed = ", ".join(f'"{m}"' for m in dropped)
    refuse_lost_targets(config, after, f'model {listed} of provider "{name}"')


def remove_provider(doc: Document, name: str) -> None:
    _entry(doc, name)
    config = parse_config(doc)
    remaining = {n: p for n, p in config.providers.items() if n != name}
    refuse_lost_targets(config, remaining, f'provider "{name}"')
    del doc["providers"][name]


def _entry(doc: Document, name: str) -> dict[str, Any]:
    return find_entry(doc, "providers", "provider", name)


def refuse_lost_targets(config: Config, providers: Mapping[str, ProviderConfig], what: str) -> None:
    """Refuse a change after which some rule's target would no longer resolve."""
    lost = unserved_targets(config.rules, providers)
    if lost:
        uses = ", ".join(f'rule "{t.rule}" ({t.field} = "{t.target}")' for t in lost)
        raise WaystoneError(f"{what} is used by {uses}")


def provider_rows(providers: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "base_url": p.base_url,
            "api_key": key_reference(p.api_key),
            "models": list(p.models),
        }
        for p in providers.values()
    ]


def key_reference(api_key: str | None) -> str | None:
    """``env:VAR`` as is; a literal key is never printed."""
    if api_key is None or api_key.startswith("env:"):
        return api_key
    return "(literal key, hidden)"
