"""``waystone alerts`` for humans: the events' table, and the test event's outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from waystone_cli.render import print_line, print_table, rich_table, when_text


def print_alerts(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        print_line("No alert events.")
        return
    table = rich_table("at", "type", "state", "attempts", "event")
    table.columns[3].justify = "right"
    for row in rows:
        table.add_row(
            when_text(row["at"]),
            row["type"],
            _state(row),
            str(row["attempts"]),
            row["text"] or "",
        )
    print_table(table)


def _state(row: Mapping[str, Any]) -> str:
    if row["state"] == "delivered":
        return f"delivered {when_text(row['delivered_at'])}"
    if row["state"] == "retrying":
        return f"retrying ({row['last_error']}), next {when_text(row['next_attempt_at'])}"
    return "pending"


def probe_text(outcome: Mapping[str, Any]) -> str:
    signed = "signed" if outcome["signed"] else "unsigned (no [alerts] secret)"
    if outcome["delivered"]:
        return (
            f"test event {outcome['id']} delivered to {outcome['webhook']}"
            f" (HTTP {outcome['status']}, {signed})"
        )
    return f"test event not delivered to {outcome['webhook']}: {outcome['error']} ({signed})"
