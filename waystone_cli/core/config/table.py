"""A TOML table being read: typed getters whose errors name the TOML path, and unknown
keys refused when the table is done."""

from __future__ import annotations

import datetime
import math
from typing import Any

from waystone_cli.core.config.snapshot import ID_RE
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.windows import WindowError, parse_window


class Table:
    """A TOML table being read: typed getters that name the path, unknown keys refused."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a table, got {type_name(data)}")
        self.data: dict[str, Any] = data
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
        self.seen.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        types_t = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in types_t:
            raise ConfigError(f"{self.at(key)}: expected {_names(types_t)}, got a boolean")
        if int in types_t and float in types_t and isinstance(value, int):
            return value
        if not isinstance(value, types_t):
            raise ConfigError(f"{self.at(key)}: expected {_names(types_t)}, got {type_name(value)}")
        # TOML has nan and inf; every comparison with nan is false, so a nan limit or
        # budget would never be reached.
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.at(key)}: must be a finite number")
        return value

    def table(self, key: str) -> Table:
        self.seen.add(key)
        return Table(self.data.get(key, {}), self.at(key))

    def str_list(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise ConfigError(f"{self.at(key)}[{i}]: expected a string, got {type_name(v)}")
        return tuple(values)

    def str_map(self, key: str) -> dict[str, str]:
        sub = self.table(key)
        for k, v in sub.data.items():
            if not isinstance(v, str):
                raise ConfigError(f"{sub.at(k)}: expected a string, got {type_name(v)}")
        return dict(sub.data)

    def date_text(self, key: str) -> str | None:
        """A value written as text or as a TOML date (``added = 2026-11-01``), as text."""
        value = self.get(key, (str, datetime.date, datetime.datetime), None)
        if value is None or isinstance(value, str):
            return value
        return str(value.isoformat())

    def done(self) -> None:
        """Refuse a key no getter asked for; the getters asked for every known key, so
        those are the candidates for a did-you-mean."""
        for key in self.data:
            if key not in self.seen:
                import difflib

                close = difflib.get_close_matches(key, sorted(self.seen), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                raise ConfigError(f"{self.at(key)}: unknown key{hint}")


def type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _names(types: tuple[type, ...]) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    if int in types and float in types:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def check_window(window: str, path: str) -> None:
    try:
        parse_window(window)
    except WindowError as err:
        raise ConfigError(f"{path}: {err}") from err


def check_id(ident: str, path: str) -> None:
    if not ID_RE.match(ident):
        raise ConfigError(f"{path}: invalid id (letters, digits and ._@:+-_ up to 128 characters)")
