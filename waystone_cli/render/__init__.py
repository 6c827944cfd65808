"""The one place where the CLI prints: consoles, JSON, tables for config entries.

Commands build plain, JSON-able rows and hand them here.  Consoles are created per call
(no module state) and look up ``sys.stdout``/``sys.stderr`` when they print, so tests
that swap the streams see everything.  Markup is off: ids and metadata are user data
and a ``[`` in them must print as itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def print_error(message: str) -> None:
    """One red line on stderr; never wrapped, so it stays one line."""
    err_console().print(f"error: {message}", style="red", soft_wrap=True)


def print_line(message: str) -> None:
    """A plain line of output (confirmations such as "Added user alice")."""
    console().print(message, soft_wrap=True)


def print_note(message: str) -> None:
    """A remark for the human at the terminal, kept off stdout so scripts stay clean."""
    err_console().print(message, style="yellow", soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def print_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def print_table(table: Table) -> None:
    console().print(table)


# --- cell formatting ------------------------------------------------------------------


def scalar_text(value: Any) -> str:
    """A metadata value as an admin would type it back (``true``, ``3``, ``free``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def mapping_text(values: Mapping[str, Any] | None) -> str:
    if not values:
        return ""
    return ", ".join(f"{k}={scalar_text(v)}" for k, v in values.items())


def credits_text(credits: Mapping[str, Any] | None) -> str:
    if not credits:
        return ""
    return f"${_money(credits['usd'])}/{credits.get('window', 'month')}"


def _money(value: Any) -> str:
    number = float(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def when_text(value: str | None) -> str:
    """An ISO time shortened to the minute for tables (JSON keeps the full value)."""
    if not value:
        return ""
    return value.replace("T", " ")[:16]


def _table(*columns: str) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _source(row: Mapping[str, Any]) -> str:
    return "+".join(s for s in ("declared", "seen") if row.get(s))


# --- tables ---------------------------------------------------------------------------


def users_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("user", "groups", "metadata", "credits", "source", "first seen")
    for r in rows:
        table.add_row(
            r["id"],
            ", ".join(r["groups"]),
            mapping_text(r["metadata"]),
            credits_text(r.get("credits")),
            _source(r),
            when_text(r.get("first_seen")),
        )
    return table


def groups_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("group", "metadata", "credits", "source", "first seen")
    for r in rows:
        table.add_row(
            r["id"],
            mapping_text(r["metadata"]),
            credits_text(r.get("credits")),
            _source(r),
            when_text(r.get("first_seen")),
        )
    return table


def members_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("user", "source")
    for r in rows:
        table.add_row(r["id"], _source(r))
    return table


def providers_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("provider", "kind", "base url", "api key", "models")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            r.get("base_url") or "",
            r.get("api_key") or "",
            ", ".join(r["models"]),
        )
    return table


def rules_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    """Rows are ``{"name", "config": <the rule's TOML table>, "used_by": [rulesets]}``."""
    table = _table("rule", "trigger", "action", "used by")
    for r in rows:
        table.add_row(
            r["name"], trigger_text(r["config"]), action_text(r["config"]), ", ".join(r["used_by"])
        )
    return table


def rulesets_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("ruleset", "when", "rules", "priority", "enabled")
    for r in rows:
        table.add_row(
            r["name"],
            r["when"],
            ", ".join(r["rules"]),
            str(r["priority"]),
            "yes" if r["enabled"] else "no",
        )
    return table


def keys_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = _table("key", "created", "hash")
    for r in rows:
        table.add_row(r["name"], when_text(r.get("created")), r["hash"][:19] + "…")
    return table


def trigger_text(rule: Mapping[str, Any]) -> str:
    parts = []
    if rule.get("model"):
        parts.append(f"model {rule['model']}")
    for key in ("usage", "share", "rate"):
        if rule.get(key):
            parts.append(f"{key} {mapping_text(rule[key])}")
    return "; ".join(parts) or "always"


_TRIGGERS = frozenset(("action", "model", "usage", "share", "rate"))


def action_text(rule: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in rule.items() if k not in _TRIGGERS}
    return f"{rule['action']} {mapping_text(fields)}".strip()


def print_detail(title: str, pairs: Sequence[tuple[str, str]]) -> None:
    """A ``show`` command's output: a title line, then aligned ``key: value`` lines."""
    width = max((len(k) for k, _ in pairs), default=0)
    lines = [title] + [f"  {k.ljust(width)}  {v}" for k, v in pairs]
    print_text("\n".join(lines))
