"""``waystone init``: write a starter config.

The starter is embedded here (the package must work without the source checkout, where
``sample-config.toml`` documents every key): the offline mock provider with prices, so
``waystone serve`` answers at once, and commented examples to grow from.
"""

from __future__ import annotations

import typer

from waystone_cli import render
from waystone_cli.configstore import write_config_text
from waystone_cli.context import app_context
from waystone_cli.starter import STARTER


def register(root: typer.Typer) -> None:
    root.command("init", help="Write a starter config.")(init)


def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
) -> None:
    path = app_context(ctx).config_path
    write_config_text(path, STARTER, overwrite=force)
    render.print_line(f"Wrote a starter config to {path}")
