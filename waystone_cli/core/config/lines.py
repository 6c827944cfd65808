"""The line of the config file that a TOML path points at, for error messages.

The validator works on the dict ``tomllib`` returns, which has no positions; this reads
the text line by line instead, following table headers and ``key = value`` lines, and
returns the line of the longest key path that leads to the error's path (the entry's
line when the key itself is missing, the key's line when its value is wrong).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

# A TOML path as the validator writes it: dotted keys, quoted where needed, and [n]
# indexes into arrays (which point at the array's line).
_PART_RE = re.compile(r'"((?:[^"\\]|\\.)*)"|([^."\[\]]+)|\[\d+\]|\.')


def toml_path_keys(path: str) -> list[str]:
    keys = []
    for match in _PART_RE.finditer(path):
        quoted, bare = match.groups()
        if quoted is not None:
            keys.append(quoted)
        elif bare is not None:
            keys.append(bare.strip())
    return keys


def line_of(text: str, path: str) -> int | None:
    """The 1-based line that ``path`` (e.g. ``rulesets.free.rules[1]``) points at."""
    target = toml_path_keys(path)
    table: list[str] = []
    best, best_len = None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            keys = _keys(line) if not line.startswith("[[") else None
            if keys is None:
                continue
            table = full = keys
        else:
            keys = _keys(line.split("=", 1)[0] + "= 0") if "=" in line else None
            if keys is None:
                continue
            full = table + keys
        if len(full) > best_len and target[: len(full)] == full:
            best, best_len = number, len(full)
    return best


def _keys(fragment: str) -> list[str] | None:
    """The one key path a header or assignment line spells, or None if it is not one."""
    try:
        data: Any = tomllib.loads(fragment)
    except tomllib.TOMLDecodeError:
        return None
    keys = []
    while isinstance(data, dict) and len(data) == 1:
        key, data = next(iter(data.items()))
        keys.append(key)
    return keys or None
