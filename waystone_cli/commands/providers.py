"""``waystone provider add|set|list|rm``: the upstreams the gateway forwards to.

The CLI only writes ``env:VAR`` key references: a literal key typed on a command line
ends up in shell history.  ``list`` never prints a literal key found in the file.
``rm`` and ``set --rm-model`` refuse while a rule's target (``to``, ``moderation``)
would no longer resolve to a provider, naming every such rule.
"""

from __future__ import annotations

import typer

from waystone_cli import render
from waystone_cli.configstore import update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import UsageError
from waystone_cli.sections.providers import (
    ProviderChange,
    add_provider,
    change_provider,
    provider_entry,
    provider_rows,
    remove_provider,
)

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command(
        "add", help="Add an OpenAI-compatible or Anthropic provider (or the built-in mock)."
    )(add)
    app.command("set", help="Change a provider's base URL, key variable or models.")(set_)
    app.command("list", help="List providers and their models.")(list_)
    app.command("rm", help="Remove a provider no rule's target depends on.")(rm)
    root.add_typer(app, name="provider", help="Manage upstream providers.")


def add(
    ctx: typer.Context,
    name: str = NAME_ARG,
    base_url: str | None = typer.Option(
        None, "--base-url", metavar="URL", help="Base URL, e.g. https://api.openai.com/v1."
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", metavar="VAR", help="Environment variable holding the API key."
    ),
    model: list[str] = typer.Option([], "--model", metavar="M", help="A model it serves; repeat."),
    kind: str = typer.Option(
        "openai", "--kind", help="openai, anthropic, or mock (offline, for demos)."
    ),
) -> None:
    entry = provider_entry(kind, base_url, api_key_env, model)
    path = app_context(ctx).config_path
    update_config(path, lambda doc: add_provider(doc, name, entry))
    render.print_line(f"Added provider {name}.")


def set_(
    ctx: typer.Context,
    name: str = NAME_ARG,
    base_url: str | None = typer.Option(None, "--base-url", metavar="URL", help="New base URL."),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", metavar="VAR", help="Environment variable holding the API key."
    ),
    add_model: list[str] = typer.Option(
        [], "--add-model", metavar="M", help="A model it serves from now on; repeat."
    ),
    rm_model: list[str] = typer.Option(
        [], "--rm-model", metavar="M", help="A model it no longer serves; repeat."
    ),
) -> None:
    change = ProviderChange(
        base_url=base_url, api_key_env=api_key_env, add_models=add_model, rm_models=rm_model
    )
    if change.is_empty():
        raise UsageError(
            "nothing to set: give --base-url, --api-key-env, --add-model or --rm-model"
        )
    path = app_context(ctx).config_path
    update_config(path, lambda doc: change_provider(doc, name, change))
    render.print_line(f"Updated provider {name}.")


def list_(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    config = app_context(ctx).load_for_reading()
    rows = provider_rows(config.providers)
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.providers_grid(rows))


def rm(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: remove_provider(doc, name))
    render.print_line(f"Removed provider {name}.")
