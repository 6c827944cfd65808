"""Rendering of ``waystone usage``: Rich tables, and column charts drawn with block characters.

The charts are plain text built here (eighth-block columns with a labelled y axis), so
they are deterministic, need no plotting state, and tests compare them whole.  Costs
show ``unpriced`` when no request of a row has a known price and a ``*`` when some do
not: their cost is unknown, never counted as $0.

Usage tables never drop or cut a number, nor drop the key column: the numbers never
wrap, and when the table is wider than the terminal only the key column folds (at a
``-``, ``/``, ``@`` or ``.`` where it can), down to ``KEY_MIN`` columns; past that the line
is as long as the numbers need.  Piped output (``room`` None) keeps every value whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from waystone_cli.render import when_text

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

Row = Mapping[str, Any]
BLOCKS = " ▁▂▃▄▅▆▇█"
NONE_LABEL = {"user": "(anonymous)", "group": "(no group)", "model": "(none)", "provider": "(none)"}
METRIC_KEY = {"cost": "cost_usd", "tokens": "total_tokens", "requests": "requests"}
UNPRICED_NOTE = "* includes unpriced requests: their cost is unknown and not counted"


def money(value: float | None, unpriced: int = 0) -> str:
    """Dollars to the cent-hundredth from $1 up; below, six places (one request's cost)."""
    if value is None:
        return "unpriced"
    text = f"${value:,.4f}" if abs(value) >= 1 else f"${value:.6f}"
    return text + (" *" if unpriced else "")


def count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def metric_text(metric: str, value: float | None) -> str:
    return money(value) if metric == "cost" else count(value or 0)


def key_text(dimension: str, key: str | None) -> str:
    return key if key is not None else NONE_LABEL.get(dimension, "(none)")


def span_text(since: str | None, until: str | None) -> str:
    start = when_text(since) if since else "the first request"
    end = when_text(until) if until else "now"
    return f"{start} → {end} (UTC)"


KEY_MIN = 12  # the key column folds no narrower: a key in 2-letter shreds reads as noise
GAP = 3  # the house style's space between columns
_BREAKS = "-/@._: "


def _table(*columns: str, right_from: int = 1, key_width: int | None = None) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, column in enumerate(columns):
        # Numbers never wrap (a wrapped cost reads as two values); long keys fold instead.
        if i >= right_from:
            table.add_column(column, justify="right", no_wrap=True)
        else:
            table.add_column(column, overflow="fold", width=key_width if i == 0 else None)
    return table


def usage_table(
    rows: Sequence[Row],
    dimension: str,
    total: Row | None = None,
    label: str = "",
    room: int | None = None,
) -> Table:
    """Usage rows keyed by ``dimension``; an ``unpriced`` column only when some are.
    ``room`` is the terminal's width (None: unlimited)."""
    with_unpriced = any(r["unpriced_requests"] for r in [*rows, *([total] if total else [])])
    columns = [dimension, "requests", "input", "output", "tokens", "cost"]
    columns += ["unpriced"] if with_unpriced else []
    body = [[key_text(dimension, r.get(dimension)), *_cells(r, with_unpriced)] for r in rows]
    foot = [[label or "total", *_cells(total, with_unpriced)]] if total is not None else []
    key_width = _key_width([columns, *body, *foot], room)
    table = _table(*columns, key_width=key_width)
    for i, cells in enumerate([*body, *foot]):
        if i == len(body):
            table.add_section()
        table.add_row(fold_key(cells[0], key_width), *cells[1:])
    return table


def _key_width(lines: Sequence[Sequence[str]], room: int | None) -> int | None:
    """The key column's width when the table must shrink to ``room``, else None."""
    from rich.cells import cell_len

    widths = [max(cell_len(line[i]) for line in lines) for i in range(len(lines[0]))]
    if room is None or sum(widths) + GAP * (len(widths) - 1) <= room:
        return None
    left = room - sum(widths[1:]) - GAP * (len(widths) - 1)
    return max(left, min(KEY_MIN, widths[0]))


def fold_key(text: str, width: int | None) -> str:
    """``text`` in lines of at most ``width``, broken after punctuation where one falls
    in the line's second half (``openai/gpt-`` + ``4o-mini``), else at ``width``."""
    if width is None:
        return text
    lines = []
    while len(text) > width:
        cut = max(text.rfind(c, 0, width) for c in _BREAKS) + 1
        cut = cut if cut > width // 2 else width
        lines.append(text[:cut])
        text = text[cut:]
    return "\n".join([*lines, text])


def _cells(r: Row, with_unpriced: bool) -> list[str]:
    cells = [
        count(r["requests"]),
        count(r["input_tokens"]),
        count(r["output_tokens"]),
        count(r["total_tokens"]),
        money(r["cost_usd"], r["unpriced_requests"]),
    ]
    return cells + ([count(r["unpriced_requests"])] if with_unpriced else [])


def top_view(
    result: Row,
    by: str,
    metric: str,
    since: str | None,
    until: str | None,
    room: int | None,
    *,
    flagged: bool = False,
) -> list[RenderableType]:
    rows = result["rows"]
    of = ", flagged requests only" if flagged else ""
    heading = f"Top {len(rows)} of {result['entities']} {_plural(by)} by {metric}{of}, {span_text(since, until)}"
    label = f"all {result['entities']} {_plural(by)}"
    table = usage_table(rows, by, result["total"], label, room)
    return [heading, table, *_note(result["total"])]


def _note(*rows: Row) -> list[RenderableType]:
    return [UNPRICED_NOTE] if any(r["unpriced_requests"] for r in rows) else []


def _plural(dimension: str) -> str:
    return dimension + "s"


def show_view(
    result: Row, kind: str, since: str | None, until: str | None, room: int | None
) -> list[RenderableType]:
    other = "group" if kind == "user" else "user"
    members = result["groups" if kind == "user" else "members"]
    totals = {k: v for k, v in result.items() if k not in ("models", "groups", "members", "daily")}
    flagged = result.get("flagged_requests", 0)
    parts: list[RenderableType] = [
        f"{kind.capitalize()} {result[kind]}, {span_text(since, until)}",
        usage_table([totals], kind, room=room),
        *_note(totals),
        *([f"{count(flagged)} flagged request(s)"] if flagged else []),
        "",
        usage_table(result["models"], "model", room=room),
        "",
        usage_table(members, other, room=room),
    ]
    daily = result["daily"]
    if daily:
        values = [d["cost_usd"] or 0.0 for d in daily]
        parts += [
            "",
            "Daily cost (USD)",
            column_chart(values, [d["day"] for d in daily], "cost", 4),
        ]
    return parts


def timeline_view(
    rows: Sequence[Row], metric: str, every: str, title: str, width: int = 80
) -> list[RenderableType]:
    key = METRIC_KEY[metric]
    values = [r[key] or 0.0 for r in rows]
    peak = max(range(len(rows)), key=lambda i: values[i])
    total = sum(values)
    unpriced = sum(r["unpriced_requests"] for r in rows)
    summary = (
        f"{len(rows)} {every}s, total {metric_text(metric, total)}, "
        f"peak {metric_text(metric, values[peak])} at {when_text(rows[peak]['bucket'])}"
    )
    if metric == "cost" and unpriced:
        summary += f"; {count(unpriced)} unpriced request(s) not counted"
    labels = [r["bucket"][:10] if every == "day" else when_text(r["bucket"]) for r in rows]
    chart = column_chart(values, labels, metric, 10, width)
    return [title, chart, summary]


def column_chart(
    values: Sequence[float], labels: Sequence[str], metric: str, height: int, width: int = 80
) -> str:
    """Columns of eighth blocks, the y axis labelled with the top and 0, first/last x label."""
    top_label = metric_text(metric, max(values, default=0.0))
    axis = max(len(top_label), 1)
    room = max(width - axis - 3, 1)
    group = math.ceil(len(values) / room)  # merge buckets when there are more than columns
    merged = [sum(values[i : i + group]) for i in range(0, len(values), group)]
    starts = list(labels[::group])
    col = max(1, min(3, room // max(len(merged), 1)))
    peak = max(merged, default=0.0)
    levels = [round(v / peak * height * 8) if peak > 0 else 0 for v in merged]
    lines = []
    for row in range(height - 1, -1, -1):
        cells = "".join(BLOCKS[max(0, min(8, lvl - row * 8))] * col for lvl in levels)
        label = top_label if row == height - 1 else ("0" if row == 0 else "")
        lines.append(f"{label.rjust(axis)} ┤{cells}".rstrip())
    plot_width = len(levels) * col
    first, last = (starts[0], starts[-1]) if starts else ("", "")
    gap = max(plot_width - len(first) - len(last), 1)
    lines.append(" " * axis + " └" + "─" * plot_width)
    lines.append(" " * (axis + 2) + (first + " " * gap + last if len(starts) > 1 else first))
    return "\n".join(lines)


def spikes_table(rows: Sequence[Row], by: str) -> Table:
    table = _table(by, "bucket", "value", "baseline", "factor", right_from=2)
    for r in rows:
        table.add_row(
            r[by],
            when_text(r["bucket"]),
            metric_text(r["metric"], r["value"]),
            metric_text(r["metric"], r["baseline"]),
            f"{r['factor']:.1f}x",
        )
    return table


def rule_spikes_table(rows: Sequence[Row], by: str) -> Table:
    """``usage spikes --rule``: per subject and window, the first request the rule fired at."""
    table = _table(
        by, "window from", "fired at", "value", "baseline", "factor", "requests", right_from=3
    )
    for r in rows:
        metric = "cost" if r["metric"] == "cost_usd" else "tokens"
        table.add_row(
            r[by],
            when_text(r["bucket"]),
            when_text(r["at"]),
            metric_text(metric, r["value"]),
            metric_text(metric, r["baseline"]),
            "new" if r["factor"] is None else f"{r['factor']:.1f}x",
            count(r["requests"]),
        )
    return table


def datasets_table(rows: Sequence[Row]) -> Table:
    table = _table("dataset", "items", "first", "last")
    for r in rows:
        table.add_row(r["name"], count(r["items"]), when_text(r["first"]), when_text(r["last"]))
    return table


def dataset_table(rows: Sequence[Row], width: int = 40) -> Table:
    table = _table("time", "user", "group", "model", "input", "output", right_from=99)
    for r in rows:
        table.add_row(
            when_text(r["time"]),
            r["user"] or "",
            r["group"] or "",
            r["model"] or "",
            _clip(prompt_text(r["input"]), width),
            _clip(r["output"] or "", width),
        )
    return table


def prompt_text(value: Any) -> str:
    """The last message's text of a chat input; other inputs as compact JSON."""
    messages = value.get("messages") if isinstance(value, dict) else value
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        if isinstance(content, str):
            return content
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def prune_text(result: Row) -> str:
    verb = "Would delete" if result["dry_run"] else "Deleted"
    if not result["requests"]:
        return "Nothing to prune: no row has outlived its retain rule."
    return (
        f"{verb} {count(result['requests'])} requests ({when_text(result['first'])} → "
        f"{when_text(result['last'])}), {count(result['content'])} stored contents and "
        f"{count(result['dataset_items'])} dataset items."
    )
