"""``waystone alerts``: the events sent to the webhook, and a test event."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from waystone_cli.context import app_context

SINCE_HELP = "Start: a duration back from now (7d, 12h) or a UTC date/time. Default: all time."


def register(root: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True)
    group.command("list")(list_alerts)
    group.command("test")(test)
    root.add_typer(group, name="alerts", help="Threshold, spike and unpriced-model webhooks.")


def list_alerts(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Alert events, newest first, with their delivery state."""
    from waystone_cli import render
    from waystone_cli.commands.usage import iso_time
    from waystone_cli.render.alerts import print_alerts

    rows = app_context(ctx).query("alerts_list", since=iso_time(since, datetime.now(UTC)))
    if as_json:
        render.print_json(rows)
    else:
        print_alerts(rows)


def test(ctx: typer.Context) -> None:
    """Send a signed test event to the configured webhook and print the outcome."""
    from waystone_cli.alert_probe import send_probe
    from waystone_cli.core.errors import WaystoneError
    from waystone_cli.render.alerts import probe_text

    outcome = send_probe(app_context(ctx).load_for_reading())
    if not outcome["delivered"]:
        raise WaystoneError(probe_text(outcome))
    from waystone_cli import render

    render.print_line(probe_text(outcome))
