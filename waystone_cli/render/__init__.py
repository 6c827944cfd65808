"""The one place where the CLI prints: consoles, JSON, tables for config entries.

Commands build plain, JSON-able rows and hand them here.  Consoles are created per call
(no module state) and look up ``sys.stdout``/``sys.stderr`` when they print, so tests
that swap the streams see everything.  Markup is off: ids and metadata are user data
and a ``[`` in them must print as itself.  For the same reason every path to the
terminal passes through ``printable``: a control character in user data is shown as an
escape (``\\x1b``) instead of reaching the terminal, where it could retitle, recolour or
clear it.  Consoles do it in ``render_str`` (every string Rich prints), the plain-text
paths before they write, and JSON escapes the few characters ``json`` leaves raw.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# C0 controls but newline and tab, DEL and the C1 controls (U+009B is a CSI too).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_RAW_IN_JSON = re.compile("[\x7f-\x9f]")  # ``json`` escapes the C0 ones itself


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` with control characters shown as escapes; ``one_line`` escapes newlines
    and tabs too (a table cell or a ``key: value`` line must stay one line)."""
    return (_CONTROL_IN_LINE if one_line else _CONTROL).sub(_escape, text)


def console(width: int | None = None) -> Console:
    return _safe_console(stderr=False, width=width)


def err_console() -> Console:
    return _safe_console(stderr=True)


def _safe_console(*, stderr: bool, width: int | None = None) -> Console:
    # Defined here, not at module level: Rich is imported only by commands that print with it.
    from rich.console import Console

    class SafeConsole(Console):
        """Rich turns every string it prints (cells, lines) into Text through here."""

        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(printable(text), **kwargs)

    return SafeConsole(stderr=stderr, width=width, highlight=False, markup=False, emoji=False)


def print_error(message: str) -> None:
    """One red line on stderr: never wrapped, and a multi-line message is joined."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    err_console().print(f"error: {line}", style="red", soft_wrap=True)


def print_line(message: str) -> None:
    """A plain line of output (confirmations such as "Added user alice")."""
    console().print(message, soft_wrap=True)


def print_note(message: str) -> None:
    """A remark for the human at the terminal, kept off stdout so scripts stay clean."""
    err_console().print(message, style="yellow", soft_wrap=True)


def print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    sys.stdout.write(_RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def print_text(text: str) -> None:
    text = printable(text)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def print_table(table: Table) -> None:
    """A Rich table (reports with few rows); config listings use ``print_grid``."""
    print_parts([table])


def table_room() -> int | None:
    """The width report tables fit into: the terminal's; None (unlimited) when stdout is
    not a terminal, so that piped output and CI logs get every value whole."""
    out = console()
    return out.width if out.is_terminal else None


def print_parts(parts: Sequence[Any]) -> None:
    """Lines and Rich tables, in order.  A table prints at the width it needs even past
    the terminal's: its columns were fitted already, and Rich would cut numbers."""
    from rich.measure import Measurement
    from rich.table import Table

    out = console()
    for part in parts:
        if isinstance(part, Table):
            need = Measurement.get(out, out.options.update(width=10_000), part).maximum
            console(width=max(out.width, need)).print(part)
        else:
            out.print(part, soft_wrap=isinstance(part, str))


# --- cell formatting ------------------------------------------------------------------


def scalar_text(value: Any) -> str:
    """A metadata value as an admin would type it back (``true``, ``3``, ``free``); a
    string that would read back as something else (``"false"``, ``"3"``) is quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, str):
        from waystone_cli.configstore import parse_scalar

        if not isinstance(parse_scalar(value), str):
            return json.dumps(value, ensure_ascii=False)
    return str(value)


def mapping_text(values: Mapping[str, Any] | None) -> str:
    if not values:
        return ""
    return ", ".join(f"{k}={scalar_text(v)}" for k, v in values.items())


def credits_text(credits: Mapping[str, Any] | None) -> str:
    if not credits:
        return ""
    return f"${_money(credits['usd'])}/{credits.get('window', 'month')}"


def entity_pairs(kind: str, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The label/value lines of ``waystone user show`` (or ``group show``) for one row."""
    pairs = [(f"metadata.{k}", scalar_text(v)) for k, v in row["metadata"].items()]
    if kind == "user":
        pairs.append(("groups", ", ".join(row["groups"])))
    pairs.append(("credits", credits_text(row["credits"])))
    pairs.append(("source", "+".join(s for s in ("declared", "seen") if row[s])))
    pairs.append(("first seen", row["first_seen"] or ""))
    pairs.append(("last seen", row["last_seen"] or ""))
    return pairs


def _money(value: Any) -> str:
    number = float(value)
    return f"{number:,.0f}" if number == int(number) else f"{number:,.2f}"


def when_text(value: str | None) -> str:
    """An ISO time shortened to the minute for tables (JSON keeps the full value)."""
    if not value:
        return ""
    return value.replace("T", " ")[:16]


def rich_table(*columns: str) -> Table:
    """A Rich table in the house style, for reports with few rows."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


_table = rich_table  # the name render/prices.py imports


@dataclass(frozen=True)
class Grid:
    """A plain table: column headers and rows of cell text."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    empty: str = "nothing to show"


def grid_lines(grid: Grid) -> list[str]:
    """Aligned text lines: the header, a rule, then the rows (no trailing spaces).

    Rich tables take seconds for a thousand rows, and ``user list`` on a big config
    must answer at once, so config listings are laid out here; long lines are left
    to the terminal (as ``ps`` and ``kubectl get`` do) rather than folded.
    """
    from rich.cells import cell_len

    grid = Grid(
        grid.columns, [[printable(c, one_line=True) for c in row] for row in grid.rows], grid.empty
    )
    widths = [cell_len(c) for c in grid.columns]
    for row in grid.rows:
        widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True))
        return "   ".join(padded).rstrip()

    return [line(grid.columns), "─" * (sum(widths) + 3 * (len(widths) - 1))] + [
        line(row) for row in grid.rows
    ]


def print_grid(grid: Grid) -> None:
    if not grid.rows:
        print_line(grid.empty)
        return
    header, rule, *body = grid_lines(grid)
    if not sys.stdout.isatty():
        # Piped into a script: plain text, and no Rich import to pay for.
        print_text("\n".join([header, rule, *body]))
        return
    out = console()
    out.print(header, style="bold", soft_wrap=True)
    out.print(rule, style="dim", soft_wrap=True)
    if body:
        out.file.write("\n".join(body) + "\n")
        out.file.flush()


def _source(row: Mapping[str, Any]) -> str:
    return "+".join(s for s in ("declared", "seen") if row.get(s))


# --- tables ---------------------------------------------------------------------------


def users_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    cells = [
        (
            r["id"],
            ", ".join(r["groups"]),
            mapping_text(r["metadata"]),
            credits_text(r.get("credits")),
            _source(r),
            when_text(r.get("first_seen")),
        )
        for r in rows
    ]
    columns = ("user", "groups", "metadata", "credits", "source", "first seen")
    return Grid(columns, cells, "No users.")


def groups_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    cells = [
        (
            r["id"],
            mapping_text(r["metadata"]),
            credits_text(r.get("credits")),
            _source(r),
            when_text(r.get("first_seen")),
        )
        for r in rows
    ]
    return Grid(("group", "metadata", "credits", "source", "first seen"), cells, "No groups.")


def members_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    return Grid(("user", "source"), [(r["id"], _source(r)) for r in rows], "No members.")


def providers_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    cells = [
        (
            r["name"],
            r["kind"],
            r.get("base_url") or "",
            r.get("api_key") or "",
            ", ".join(r["models"]),
        )
        for r in rows
    ]
    columns = ("provider", "kind", "base url", "api key", "models")
    return Grid(columns, cells, "No providers.")


def rules_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    """Rows are ``{"name", "config": <the rule's TOML table>, "used_by": [rulesets]}``."""
    cells = [
        (r["name"], trigger_text(r["config"]), action_text(r["config"]), ", ".join(r["used_by"]))
        for r in rows
    ]
    return Grid(("rule", "trigger", "action", "used by"), cells, "No rules.")


def rulesets_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    cells = [
        (
            r["name"],
            r["when"],
            ", ".join(r["rules"]),
            str(r["priority"]),
            "yes" if r["enabled"] else "no",
        )
        for r in rows
    ]
    return Grid(("ruleset", "when", "rules", "priority", "enabled"), cells, "No rulesets.")


def keys_grid(rows: Iterable[Mapping[str, Any]]) -> Grid:
    cells = [(r["name"], when_text(r.get("created")), r["hash"][:19] + "…") for r in rows]
    return Grid(("key", "created", "hash"), cells, "No keys.")


def trigger_text(rule: Mapping[str, Any]) -> str:
    parts = []
    if rule.get("model"):
        parts.append(f"model {rule['model']}")
    for key in ("usage", "share", "rate", "spike"):
        if rule.get(key):
            parts.append(f"{key} {mapping_text(rule[key])}")
    return "; ".join(parts) or "always"


_TRIGGERS = frozenset(("action", "model", "usage", "share", "rate", "spike"))


def action_text(rule: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in rule.items() if k not in _TRIGGERS}
    return f"{rule['action']} {mapping_text(fields)}".strip()


def print_detail(title: str, pairs: Sequence[tuple[str, str]]) -> None:
    """A ``show`` command's output: a title line, then aligned ``key: value`` lines."""
    width = max((len(k) for k, _ in pairs), default=0)
    lines = [printable(title, one_line=True)] + [
        f"  {k.ljust(width)}  {printable(v, one_line=True)}".rstrip() for k, v in pairs
    ]
    print_text("\n".join(lines))
