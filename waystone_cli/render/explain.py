"""How ``waystone rules explain`` prints: rulesets, limits, then the verdict and reasons.

It renders the same JSON-able report ``--json`` prints, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from waystone_cli import render
from waystone_cli.core.decision import amount

Report = Mapping[str, Any]


def print_explanation(report: Report) -> None:
    render.console().print(explanation_view(report))


def explanation_view(report: Report) -> RenderableType:
    # Plain strings, not Text: the console escapes control characters in strings.
    parts: list[RenderableType] = [_heading(report), ""]
    parts += [rulesets_table(report["rulesets"]), ""]
    if report["limits"]:
        parts += [limits_table(report["limits"]), ""]
    parts += [verdict_line(report), "", "Why:", reasons_grid(report["reasons"])]
    return Group(*parts)


def _heading(report: Report) -> str:
    who = [f"{kind} {report[kind]}" for kind in ("user", "group") if report[kind]]
    return f"A request from {', '.join(who) or 'no user or group'} for {report['model']}"


def rulesets_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = render.rich_table("Ruleset", "Matched", "Subject", "Why")
    for row in rows:
        disabled = row["why"] == ["disabled"] and not row["matched"]
        matched = "disabled" if disabled else "yes" if row["matched"] else "no"
        table.add_row(
            row["name"], matched, ", ".join(row["subjects"]) or "-", "\n".join(row["why"])
        )
    if not rows:
        table.add_row("(no rulesets)", "", "", "")
    return table


def limits_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = render.rich_table("Rule", "Subject", "Metric", "Window", "Used", "Limit")
    for column in table.columns[4:]:
        column.justify = "right"
    for row in rows:
        rule = f"{row['ruleset']}/{row['rule']}" if row["ruleset"] else row["rule"]
        metric = row["metric"]
        table.add_row(
            rule,
            row["subject"],
            metric,
            row["window"],
            amount(metric, row["used"]),
            amount(metric, row["limit"]),
        )
    return table


def verdict_line(report: Report) -> str:
    if not report["allowed"]:
        return f"Verdict: refused with {report['status']}: {report['message']}"
    verdict = f"Verdict: allowed, model {report['model_used']}"
    if report["max_tokens"] is not None:
        verdict += f", max_tokens capped at {report['max_tokens']}"
    return verdict


def reasons_grid(reasons: Sequence[str]) -> Table:
    """One bullet per reason; long ones wrap under their own text, not under the bullet."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in reasons:
        grid.add_row("  -", line)
    return grid
