"""Carry a change of the config's plain dict over to its text, keeping what the admin wrote.

Commands edit the plain dict that ``tomllib`` gives (simple, and validated as is); this
module then compares the dict before and after and applies only the difference to a
``tomlkit`` document of the original text.  Untouched entries keep their comments, order,
spacing and quoting; a changed value keeps the comment on its line; a new entry is laid
out as ``render_toml`` would (a ``[section.name]`` table, small tables inline) and goes
after the last entry of its section.

Comments and blank lines above a table header belong, in ``tomlkit``'s model, to the end
of the table before it; a new entry inserted after that table would land between a
comment and the header it describes, so those trailing lines are moved below the new
entry; a removed table hands its trailing lines to the table shown before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.container import Container, OutOfOrderTableProxy
from tomlkit.items import Comment, Item, Table, Whitespace

from waystone_cli.configstore import COLLECTIONS

Node = Container | Table | OutOfOrderTableProxy


def patched_text(text: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """``text`` (which reads as ``before``) edited so that it reads as ``after``."""
    document = tomlkit.parse(text)
    _patch(document, document, before, after, depth=0, section=None, add_to=document)
    # A new entry at the end of the file brings its separating blank line along.
    return document.as_string().rstrip("\n") + "\n"


def _patch(
    document: Container,
    node: Node,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    depth: int,
    section: str | None,
    add_to: Node,
) -> None:
    """Edit ``node`` from ``before`` to ``after``; new keys go into ``add_to`` (``node``
    itself, except for a section split across the file: its last part)."""
    for key in [k for k in before if k not in after]:
        _remove(document, node, key)
    # Tables are edited key by key; an inline table is one line and is replaced whole.
    for key, value in after.items():
        old = before.get(key)
        if key in before and old == value:
            continue
        current = node.get(key) if key in before else None
        if (
            isinstance(old, Mapping)
            and isinstance(value, Mapping)
            and isinstance(current, (Table, OutOfOrderTableProxy))
        ):
            child_section = key if depth == 0 else section
            tail = _last_part(node, key) if isinstance(current, OutOfOrderTableProxy) else current
            _patch(document, current, old, value, depth + 1, child_section, tail)
        elif key in before:
            node[key] = _inline(value) if depth else _top(key, value)
        else:
            _add(add_to, key, value, depth, section)


def _remove(document: Container, node: Node, key: str) -> None:
    """Delete ``key``.  The comment lines that end a removed table describe the header
    after it, so they move to the end of the table before it; every comment stays
    (even the notes above the removed header: deleting the admin's words is not ours)."""
    item = node.get(key)
    removed = _tables_of(item) if isinstance(item, Table) else []
    tables = _tables_in_order(document) if removed else []
    index = next((i for i, t in enumerate(tables) if t is removed[0]), 0)
    moved = _pop_trailing(removed[-1]) if index > 0 else []
    del node[key]
    if index == 0:
        return
    previous = tables[index - 1]
    if moved and not isinstance(moved[0], Whitespace):
        moved.insert(0, tomlkit.nl())
    for line in moved:
        previous.add(line)


def _pop_trailing(table: Table) -> list[Comment | Whitespace]:
    body = table.value.body
    taken: list[Comment | Whitespace] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], (Comment, Whitespace)):
        taken.insert(0, body.pop()[1])  # type: ignore[arg-type]
    return taken


def _tables_of(table: Table) -> list[Table]:
    """The table and the tables under it, as the file shows them (a super-table such as
    ``providers`` has no header of its own)."""
    return ([] if table.is_super_table() else [table]) + _tables_in_order(table)


def _tables_in_order(container: Container | Table) -> list[Table]:
    """Every table of the document in the order the file shows their headers."""
    body = container.body if isinstance(container, Container) else container.value.body
    found: list[Table] = []
    for _, item in body:
        if isinstance(item, Table):
            found.extend(_tables_of(item))
    return found


def _add(node: Node, key: str, value: Any, depth: int, section: str | None) -> None:
    if depth == 0:
        node[key] = _top(key, value)
    elif depth == 1 and section in COLLECTIONS and not isinstance(node, Container):
        trailing = _take_trailing_lines(node)
        entry = _table(value)
        if trailing and not isinstance(trailing[0], Whitespace):
            entry.add(tomlkit.nl())
        for line in trailing or [tomlkit.nl()]:
            entry.add(line)
        node[key] = entry
    else:
        node[key] = _inline(value)


def _last_part(document: Node, section: str) -> Table:
    """The last ``[section.*]`` part of a section that the file splits in several."""
    assert isinstance(document, Container)
    parts = [item for k, item in document.body if k is not None and k.key == section]
    last = parts[-1]
    assert isinstance(last, Table)
    return last


def _take_trailing_lines(section: Table | OutOfOrderTableProxy) -> list[Comment | Whitespace]:
    """Pop the comment and blank lines that end the section's last entry (they sit above
    whatever header comes next in the file)."""
    tables = [item for item in section.values() if isinstance(item, Table)]
    if not tables:
        return []
    taken = _pop_trailing(tables[-1])
    if taken:
        tables[-1].add(tomlkit.nl())
    return taken


def _top(key: str, value: Any) -> Item:
    if not isinstance(value, Mapping):
        return _inline(value)
    if key in COLLECTIONS:
        section = tomlkit.table(is_super_table=True)
        for name, entry in value.items():
            section.add(name, _table(entry) if isinstance(entry, Mapping) else _inline(entry))
            section.add(tomlkit.nl())
        return section
    table = _table(value)
    table.add(tomlkit.nl())
    return table


def _table(body: Mapping[str, Any]) -> Table:
    table = tomlkit.table()
    for key, value in body.items():
        table.add(key, _inline(value))
    return table


def _inline(value: Any) -> Item:
    """A value as the CLI renders new text (``{ a = 1 }``, ``Z`` for UTC)."""
    from waystone_cli.configstore import inline_value

    item = tomlkit.parse(f"v = {inline_value(value)}\n").item("v")
    assert isinstance(item, Item)
    return item
