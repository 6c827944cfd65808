"""``waystone rules explain``: parse the request, ask ``waystone_cli.explain``, render."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from waystone_cli.context import app_context
from waystone_cli.explain import explain_request


def now() -> datetime:
    """The moment explained (tests freeze it)."""
    return datetime.now(UTC)


def register(root: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    rules = typer.Typer(
        no_args_is_help=True,
        help="Explain how rulesets treat a request (`waystone rule` manages the rules).",
    )
    rules.command("explain")(explain)
    root.add_typer(rules, name="rules")


def explain(
    ctx: typer.Context,
    user: str | None = typer.Option(
        None, "--user", metavar="U", help="The user the request names."
    ),
    group: str | None = typer.Option(
        None, "--group", metavar="G", help="The group the request names (never inferred)."
    ),
    model: str = typer.Option(..., "--model", metavar="M", help="The requested model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show which rulesets match a request, usage against every limit, and the verdict."""
    from waystone_cli.render.explain import print_explanation

    report = explain_request(app_context(ctx), user=user, group=group, model=model, at=now())
    if as_json:
        from waystone_cli import render

        render.print_json(report)
    else:
        print_explanation(report)
