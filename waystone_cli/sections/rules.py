"""The ``[rules]`` section as ``waystone rule`` adds, changes, renames, removes and lists it.

``K=V`` pairs with dotted keys reach into trigger tables; a rule a ruleset names cannot be
removed, and a rename follows it into the rulesets that name it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from waystone_cli.configstore import Document, parse_assignment
from waystone_cli.core.errors import NotFoundError, UsageError, WaystoneError
from waystone_cli.sections import add_entry, find_entry


def rule_entry(action: str, model: str | None, assignments: Sequence[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if model is not None:
        entry["model"] = model
    entry["action"] = action
    for text in assignments:
        key, value = parse_assignment(text)
        if key.split(".")[0] in ("action", "model"):
            raise UsageError(f"--set {key}: use --{key.split('.')[0]} instead")
        set_dotted(entry, key, value)
    return entry


def set_dotted(entry: dict[str, Any], key: str, value: Any) -> None:
    """``a.b=V`` sets ``entry["a"]["b"]``; clashing with a plain value is misuse."""
    *parents, leaf = key.split(".")
    if not leaf or any(not p for p in parents):
        raise UsageError(f'invalid key "{key}"')
    table = entry
    for part in parents:
        child = table.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f'--set {key}: "{part}" is already set to a value')
        table = child
    if isinstance(table.get(leaf), dict):
        raise UsageError(f'--set {key}: "{leaf}" is already a table')
    table[leaf] = value


def add_rule(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    add_entry(doc, "rules", "rule", name, entry, " (remove it first to redefine it)")


def _rule(doc: Document, name: str) -> dict[str, Any]:
    return find_entry(doc, "rules", "rule", name)


def set_rule_fields(doc: Document, name: str, fields: Sequence[tuple[str, Any]]) -> None:
    entry = _rule(doc, name)
    for key, value in fields:
        set_dotted(entry, key, value)


def rename_rule(doc: Document, old: str, new: str) -> list[str]:
    """Rename ``old`` to ``new`` where it is defined and where rulesets name it."""
    _rule(doc, old)
    rules = doc["rules"]
    if new in rules:
        raise WaystoneError(f'rule "{new}" already exists')
    doc["rules"] = {new if k == old else k: v for k, v in rules.items()}
    users = rulesets_using(doc, old)
    for ruleset in users:
        body = doc["rulesets"][ruleset]
        body["rules"] = [new if r == old else r for r in body["rules"]]
    return users


def remove_rule(doc: Document, name: str) -> None:
    if name not in doc.get("rules", {}):
        raise NotFoundError(f'no rule named "{name}"')
    users = rulesets_using(doc, name)
    if users:
        raise WaystoneError(
            f'rule "{name}" is used by ruleset {", ".join(users)} (remove it there first)'
        )
    del doc["rules"][name]


def rulesets_using(doc: Document, rule: str) -> list[str]:
    return [rs for rs, body in doc.get("rulesets", {}).items() if rule in body.get("rules", [])]


def rule_rows(doc: Document) -> list[dict[str, Any]]:
    return [
        {"name": name, "config": dict(body), "used_by": rulesets_using(doc, name)}
        for name, body in doc.get("rules", {}).items()
    ]
