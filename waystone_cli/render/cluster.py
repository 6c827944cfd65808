"""``waystone cluster status`` for humans: the instances' table, then one line per server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waystone_cli.render import print_parts, rich_table, when_text


def print_cluster_status(report: Mapping[str, Any]) -> None:
    parts: list[Any] = []
    instances = report["instances"]
    if instances:
        table = rich_table("instance", "host", "pid", "started", "last seen", "up", "req/min")
        for number in (2, 6):
            table.columns[number].justify = "right"
        for i in instances:
            table.add_row(
                i["name"],
                i["host"],
                str(i["pid"]),
                when_text(i["started_at"]),
                f"{i['seconds_since_seen']} s ago",
                "yes" if i["up"] else "no",
                f"{i['requests_last_minute']:,}",
            )
        parts.append(table)
    else:
        parts.append("no instance seen in the last 10 minutes")
    parts += [
        f"redis    {_redis_text(report['redis'])}",
        f"ledger   {_ledger_text(report['ledger'])}",
        f"rebuild  {_rebuild_text(report['rebuild'])}",
    ]
    print_parts(parts)


def _redis_text(redis: Mapping[str, Any]) -> str:
    if not redis["configured"]:
        return "not configured: each instance counts in its own memory"
    return f"{redis['url']}: {_reach(redis)}"


def _ledger_text(ledger: Mapping[str, Any]) -> str:
    return f"{ledger['backend']} {ledger['location']}: {_reach(ledger)}"


def _reach(part: Mapping[str, Any]) -> str:
    return "reachable" if part["reachable"] else f"unreachable ({part['error']})"


def _rebuild_text(rebuild: Mapping[str, Any]) -> str:
    state = str(rebuild["state"])
    if state == "n/a":
        return "n/a (no Redis)"
    if state in ("none", "unknown"):
        return state
    by = f" by {rebuild['instance']}" if rebuild["instance"] else ""
    since = when_text(rebuild["started_at"])
    until = when_text(rebuild["finished_at"])
    span = f", {since} to {until}" if until else (f", since {since}" if since else "")
    return f"{state}{by}{span}"
