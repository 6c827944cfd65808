"""The ``[rulesets]`` section as ``waystone ruleset`` adds, changes, enables, removes and lists it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from waystone_cli.configstore import Document
from waystone_cli.core.errors import NotFoundError
from waystone_cli.sections import add_entry, find_entry


def ruleset_entry(when: str, rules: Sequence[str], priority: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"when": when, "rules": list(dict.fromkeys(rules))}
    if priority is not None:
        entry["priority"] = priority
    return entry


def add_ruleset(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    add_entry(doc, "rulesets", "ruleset", name, entry, " (remove it first to redefine it)")


def _entry(doc: Document, name: str) -> dict[str, Any]:
    return find_entry(doc, "rulesets", "ruleset", name)


def remove_ruleset(doc: Document, name: str) -> None:
    _entry(doc, name)
    del doc["rulesets"][name]


def change_ruleset(
    doc: Document,
    name: str,
    when: str | None,
    priority: int | None,
    add: Sequence[str],
    remove: Sequence[str],
) -> None:
    entry = _entry(doc, name)
    if when is not None:
        entry["when"] = when
    if priority is not None:
        entry["priority"] = priority
    rules = list(entry.get("rules", []))
    for rule in remove:
        if rule not in rules:
            raise NotFoundError(f'ruleset "{name}" does not apply rule "{rule}"')
        rules.remove(rule)
    rules.extend(r for r in dict.fromkeys(add) if r not in rules)
    entry["rules"] = rules


def set_enabled(doc: Document, name: str, enabled: bool) -> None:
    entry = _entry(doc, name)
    if enabled:
        entry.pop("enabled", None)
    else:
        entry["enabled"] = False


def ruleset_rows(doc: Document) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "when": body.get("when"),
            "rules": list(body.get("rules", [])),
            "priority": body.get("priority", 0),
            "enabled": body.get("enabled", True),
        }
        for name, body in doc.get("rulesets", {}).items()
    ]
