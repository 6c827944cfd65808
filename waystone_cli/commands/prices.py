"""``waystone prices check``: which models have no known price.

Two lists: models seen in traffic whose requests were recorded as unpriced (from the
ledger, with whether the current config and price table now price them, e.g. after a
``[prices]`` entry was added), and models the providers list that nothing prices.
An unpriced request's cost is unknown, never counted as $0, so both lists are worth
emptying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from waystone_cli import render
from waystone_cli.context import app_context

if TYPE_CHECKING:
    from waystone_cli.core.config import Config


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("check", help="List models with no known price (seen in traffic or configured).")(
        check
    )
    root.add_typer(app, name="prices", help="Check model prices.")


def check(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    state = app_context(ctx)
    report = price_report(state.load_for_reading(), state.query("unpriced_models"))
    if as_json:
        render.print_json(report)
        return
    from waystone_cli.render.prices import print_price_report

    print_price_report(report)


def price_report(config: Config, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"seen": [...], "configured": [...]}``: the rows of both lists, JSON-able."""
    from waystone_cli.core.pricing import Pricer

    pricer = Pricer(
        config.prices, base_urls={name: p.base_url for name, p in config.providers.items()}
    )
    return {
        "seen": [
            {**row, "priced_now": pricer.price(row["provider"] or "", row["model"]) is not None}
            for row in seen
        ],
        "configured": [
            {"provider": name, "model": model}
            for name, provider in config.providers.items()
            for model in provider.models
            if pricer.price(name, model) is None
        ],
    }
