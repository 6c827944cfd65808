"""``waystone provider add|list|rm``: the upstreams the gateway forwards to.

The CLI only writes ``env:VAR`` key references: a literal key typed on a command line
ends up in shell history.  ``list`` never prints a literal key found in the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import typer

from waystone_cli import render
from waystone_cli.configstore import Document, update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError, WaystoneError

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("add", help="Add an OpenAI-compatible provider (or the built-in mock).")(add)
    app.command("list", help="List providers and their models.")(list_)
    app.command("rm", help="Remove a provider no rule refers to.")(rm)
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
    kind: str = typer.Option("openai", "--kind", help="openai, or mock (offline, for demos)."),
) -> None:
    entry = provider_entry(kind, base_url, api_key_env, model)
    path = app_context(ctx).config_path
    update_config(path, lambda doc: add_provider(doc, name, entry))
    render.print_line(f"Added provider {name}.")


def list_(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    config = app_context(ctx).load()
    rows = provider_rows(config.providers)
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.providers_grid(rows))


def rm(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: remove_provider(doc, name))
    render.print_line(f"Removed provider {name}.")


def provider_entry(
    kind: str, base_url: str | None, api_key_env: str | None, models: Sequence[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if kind != "openai":
        entry["kind"] = kind
    if base_url is not None:
        entry["base_url"] = base_url
    if api_key_env is not None:
        entry["api_key"] = f"env:{api_key_env.removeprefix('env:')}"
    entry["models"] = list(dict.fromkeys(models))
    return entry


def add_provider(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    table = doc.setdefault("providers", {})
    if name in table:
        raise WaystoneError(f'provider "{name}" already exists')
    table[name] = dict(entry)


def remove_provider(doc: Document, name: str) -> None:
    if name not in doc.get("providers", {}):
        raise NotFoundError(f'no provider named "{name}"')
    for rule, body in doc.get("rules", {}).items():
        for key in ("to", "moderation"):
            target = body.get(key)
            if isinstance(target, str) and target.split("/", 1)[0] == name and "/" in target:
                raise WaystoneError(
                    f'provider "{name}" is used by rule "{rule}" ({key} = "{target}")'
                )
    del doc["providers"][name]


def provider_rows(providers: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "kind": p.kind,
            "base_url": p.base_url,
            "api_key": key_reference(p.api_key),
            "models": list(p.models),
        }
        for p in providers.values()
    ]


def key_reference(api_key: str | None) -> str | None:
    """``env:VAR`` as is; a literal key is never printed."""
    if api_key is None or api_key.startswith("env:"):
        return api_key
    return "(literal key, hidden)"
