"""Rendering of ``waystone prices check``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waystone_cli.render import _table, console, print_line, when_text


def print_price_report(report: Mapping[str, Any]) -> None:
    seen, configured = report["seen"], report["configured"]
    if not seen and not configured:
        print_line("Every model seen in traffic or configured has a price.")
        return
    out = console()
    if seen:
        table = _table("provider", "model", "unpriced requests", "last seen", "now")
        for r in seen:
            now = "priced" if r["priced_now"] else "unpriced"
            table.add_row(
                r["provider"] or "", r["model"], str(r["requests"]), when_text(r["last_seen"]), now
            )
        out.print("Unpriced models seen in traffic:")
        out.print(table)
    if configured:
        table = _table("provider", "model")
        for r in configured:
            table.add_row(r["provider"], r["model"])
        out.print("Configured models with no price:")
        out.print(table)
    out.print(
        'Add prices in USD per million tokens, e.g. [prices."provider/model"] input = 1.0, output = 4.0',
        soft_wrap=True,
    )
