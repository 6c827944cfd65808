"""``waystone key create|list|revoke``: gateway keys for client applications.

A new key is printed once, alone on stdout so a script can capture it; only its hash is
stored (``sections.keys``).
"""

from __future__ import annotations

import typer

from waystone_cli import render
from waystone_cli.configstore import load_document, timestamp, update_config
from waystone_cli.context import app_context
from waystone_cli.sections.keys import (
    add_key,
    key_hash,
    key_rows,
    new_key,
    remove_key,
)

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("create", help="Create a gateway key; it is shown once.")(create)
    app.command("list", help="List gateway keys (names and dates, never the keys).")(list_)
    app.command("revoke", help="Revoke a gateway key.")(revoke)
    root.add_typer(app, name="key", help="Manage the gateway's API keys.")


def create(ctx: typer.Context, name: str = NAME_ARG) -> None:
    key = new_key()
    entry = {"hash": key_hash(key), "created": timestamp()}
    path = app_context(ctx).config_path
    update_config(path, lambda doc: add_key(doc, name, entry))
    render.print_text(key)
    render.print_note(f'Key "{name}" created. Store it now: it cannot be shown again.')


def list_(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    doc, _ = load_document(app_context(ctx).config_path)
    rows = key_rows(doc)
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.keys_grid(rows))


def revoke(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    left = update_config(path, lambda doc: remove_key(doc, name))
    render.print_line(f"Revoked key {name}.")
    if not left:
        render.print_note(
            "No gateway key is left: the gateway now serves loopback clients without a key."
        )
