"""The config file's sections as the CLI edits them: one module per section.

Each function takes the TOML document as parsed (``configstore.update_config`` reads it
under the lock, hands it over, validates the result whole and writes it back atomically)
and adds, changes or removes one entry, or refuses with an error that says what to do
instead; the ``*_rows`` functions are the entries as ``list`` and ``show`` print them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waystone_cli.configstore import Document
from waystone_cli.core.errors import NotFoundError, WaystoneError


def add_entry(
    doc: Document, section: str, noun: str, name: str, entry: Mapping[str, Any], hint: str = ""
) -> None:
    """Add ``[section.name]``; an entry of that name already there is refused."""
    table = doc.setdefault(section, {})
    if name in table:
        raise WaystoneError(f'{noun} "{name}" already exists{hint}')
    table[name] = dict(entry)


def find_entry(doc: Document, section: str, noun: str, name: str, hint: str = "") -> dict[str, Any]:
    """The table ``[section.name]``, to change in place; a missing one is NotFoundError."""
    entry = doc.get(section, {}).get(name)
    if not isinstance(entry, dict):
        raise NotFoundError(f'no {noun} named "{name}"{hint}')
    return entry
