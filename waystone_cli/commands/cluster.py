"""``waystone cluster status``: the instances seen recently and the shared servers."""

from __future__ import annotations

import typer

from waystone_cli.context import app_context


def register(root: typer.Typer) -> None:
    group = typer.Typer(no_args_is_help=True)
    group.command("status")(status)
    root.add_typer(group, name="cluster", help="Several instances: who serves, the shared servers.")


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Instances seen recently, Redis and ledger reachability, the counter rebuild state."""
    from waystone_cli import render
    from waystone_cli.cluster_status import cluster_status
    from waystone_cli.render.cluster import print_cluster_status

    context = app_context(ctx)
    report = cluster_status(context, context.load_for_reading())
    if as_json:
        render.print_json(report)
    else:
        print_cluster_status(report)
