"""Edits of the declared users and groups in the TOML document.

Each function takes the document as parsed (``configstore.update_config`` reads it under
the lock, hands it over, and writes it back atomically) and changes one entity's entry, or
refuses with an error that says which command to use instead.  Only declared entities can
be edited: the ones traffic named live in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from waystone_cli.configstore import Document, parse_assignment, timestamp
from waystone_cli.core.entities import Kind
from waystone_cli.core.errors import UsageError, WaystoneError
from waystone_cli.sections import add_entry, find_entry

SECTION: dict[str, str] = {"user": "users", "group": "groups"}
META_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def parse_metadata(assignments: Sequence[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for text in assignments:
        key, value = parse_assignment(text)
        check_meta_key(key)
        meta[key] = value
    return meta


def check_meta_key(key: str) -> None:
    if not key or not set(key) <= META_KEY_CHARS:
        raise UsageError(f'invalid metadata key "{key}" (letters, digits, _ and -)')


def budget(usd: float | None, window: str | None) -> dict[str, Any] | None:
    if usd is None:
        if window is not None:
            raise UsageError("--credits-window needs --credits-usd")
        return None
    return {"usd": whole(usd), "window": window or "month"}


def whole(number: float) -> float | int:
    """``10.0`` → ``10``: the TOML then reads as the admin typed it."""
    return int(number) if number.is_integer() else number


def new_entry(
    meta: Mapping[str, Any], groups: Sequence[str], budget: Mapping[str, Any] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if meta:
        entry["metadata"] = dict(meta)
    if groups:
        entry["groups"] = list(dict.fromkeys(groups))
    if budget:
        entry["credits"] = dict(budget)
    entry["added"] = timestamp()
    return entry


def add_entity(doc: Document, kind: Kind, ident: str, entry: Mapping[str, Any]) -> None:
    hint = f" (change it with `waystone {kind} set`)"
    add_entry(doc, SECTION[kind], kind, ident, entry, hint)


def declared_entry(doc: Document, kind: Kind, ident: str) -> dict[str, Any]:
    hint = f" in the config (add it with `waystone {kind} add`)"
    return find_entry(doc, SECTION[kind], kind, ident, hint)


def set_fields(
    doc: Document,
    kind: Kind,
    ident: str,
    meta: Mapping[str, Any],
    usd: float | None,
    window: str | None,
) -> None:
    entry = declared_entry(doc, kind, ident)
    if meta:
        entry.setdefault("metadata", {}).update(meta)
    if usd is not None:
        entry["credits"] = {
            "usd": whole(usd),
            "window": window or entry.get("credits", {}).get("window", "month"),
        }
    elif window is not None:
        if "credits" not in entry:
            raise UsageError(f'{kind} "{ident}" has no credits: give --credits-usd too')
        entry["credits"]["window"] = window


def unset_fields(
    doc: Document, kind: Kind, ident: str, keys: Sequence[str], drop_credits: bool
) -> None:
    entry = declared_entry(doc, kind, ident)
    meta = entry.get("metadata", {})
    for key in keys:
        if key not in meta:
            raise WaystoneError(f'{kind} "{ident}" has no metadata key "{key}"')
        del meta[key]
    if not meta:
        entry.pop("metadata", None)
    if drop_credits:
        if "credits" not in entry:
            raise WaystoneError(f'{kind} "{ident}" has no credits')
        del entry["credits"]


def remove_entity(doc: Document, kind: Kind, ident: str) -> None:
    declared_entry(doc, kind, ident)
    if kind == "group":
        members = [u for u, e in doc.get("users", {}).items() if ident in e.get("groups", [])]
        if members:
            raise WaystoneError(
                f'group "{ident}" still has members in the config: {", ".join(members)} '
                f"(unlink them with `waystone group unlink {ident} USER...`)"
            )
    del doc[SECTION[kind]][ident]


def link_users(doc: Document, group: str, users: Sequence[str]) -> list[str]:
    """Add ``group`` to each user's groups; returns the users that had to be declared."""
    declared_entry(doc, "group", group)
    table = doc.setdefault("users", {})
    created = []
    for user in users:
        if user not in table:
            table[user] = {"added": timestamp()}
            created.append(user)
        groups = table[user].setdefault("groups", [])
        if group not in groups:
            groups.append(group)
    return created


def unlink_users(doc: Document, group: str, users: Sequence[str]) -> None:
    for user in users:
        entry = declared_entry(doc, "user", user)
        groups = entry.get("groups", [])
        if group not in groups:
            raise WaystoneError(f'user "{user}" is not a member of "{group}" in the config')
        groups.remove(group)
        if not groups:
            del entry["groups"]
