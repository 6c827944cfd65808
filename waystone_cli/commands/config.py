"""``waystone config path|show|validate``: where the config is and whether it holds."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from waystone_cli import render
from waystone_cli.configstore import load_document, lock_path
from waystone_cli.context import AppContext, app_context
from waystone_cli.core.config import Config
from waystone_cli.core.config.warnings import config_warnings
from waystone_cli.core.errors import ConfigError


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("path", help="Print the config file's path (--all: every path waystone uses).")(
        path
    )
    app.command("show", help="Print the config file (after checking that it validates).")(show)
    app.command("validate", help="Check the config file; errors name the TOML path.")(validate)
    root.add_typer(app, name="config", help="Locate, print and check the config file.")


def path(
    ctx: typer.Context,
    every: bool = typer.Option(
        False, "--all", help="Also the home, ledger, admin socket and lock file paths."
    ),
) -> None:
    context = app_context(ctx)
    if not every:
        render.print_text(str(context.config_path))
        return
    home = os.environ.get("WAYSTONE_HOME")
    rows = [
        ("home", f"{home} (WAYSTONE_HOME)" if home else "unset (WAYSTONE_HOME): platform folders"),
        ("config", str(context.config_path)),
        ("ledger", _ledger(context)),
        ("socket", str(context.socket_path())),
        ("lock", str(lock_path(context.config_path))),
    ]
    render.print_text("\n".join(f"{label:<7} {value}" for label, value in rows))


def _ledger(context: AppContext) -> str:
    config = context.load_for_reading()
    if config.ledger.url is None:
        return str(context.ledger_path(config))
    from waystone_cli.ledger.postgres import hide_password

    return f"postgres {hide_password(config.ledger.url)}"


def show(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print it as JSON.")
) -> None:
    config_path = _existing(app_context(ctx).config_path)
    doc, _ = load_document(config_path)
    if as_json:
        render.print_json(doc)
    else:
        render.print_text(config_path.read_text(encoding="utf-8"))


def validate(ctx: typer.Context) -> None:
    config_path = _existing(app_context(ctx).config_path)
    _, config = load_document(config_path)
    render.print_line(f"{config_path}: valid ({summary(config)})")
    for warning in config_warnings(config, os.environ):
        render.print_note(f"warning: {warning}")


def _existing(config_path: Path) -> Path:
    if not config_path.exists():
        raise ConfigError(f"no config file at {config_path} (create one with `waystone init`)")
    return config_path


def summary(config: Config) -> str:
    counts = [
        (len(config.providers), "provider"),
        (len(config.users), "user"),
        (len(config.groups), "group"),
        (len(config.rules), "rule"),
        (len(config.rulesets), "ruleset"),
        (len(config.keys), "key"),
    ]
    return ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts)
