"""``waystone ruleset add|set|list|show|rm|enable|disable``: a condition and the rules it applies.

The condition is parsed when the config is validated, so ``add`` refuses a condition
that does not parse and points at the offending token.  ``disable`` keeps a ruleset in
the file with ``enabled = false``; ``enable`` drops that key (enabled is the default).
"""

from __future__ import annotations

import typer

from waystone_cli import render
from waystone_cli.configstore import load_document, update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError, UsageError
from waystone_cli.sections.rulesets import (
    add_ruleset,
    change_ruleset,
    remove_ruleset,
    ruleset_entry,
    ruleset_rows,
    set_enabled,
)

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("add", help="Add a ruleset: a condition and the rules it applies.")(add)
    app.command("set", help="Change a ruleset's condition, priority or rules.")(set_)
    app.command("list", help="List rulesets.")(list_)
    app.command("show", help="Show one ruleset.")(show)
    app.command("rm", help="Remove a ruleset.")(rm)
    app.command("enable", help="Enable a disabled ruleset.")(enable)
    app.command("disable", help="Disable a ruleset without removing it.")(disable)
    root.add_typer(app, name="ruleset", help="Manage rulesets (condition → rules).")


def add(
    ctx: typer.Context,
    name: str = NAME_ARG,
    when: str = typer.Option(
        ..., "--when", metavar="COND", help='Condition, e.g. "user.tier = free".'
    ),
    rule: list[str] = typer.Option(..., "--rule", metavar="R", help="A rule to apply; repeat."),
    priority: int | None = typer.Option(
        None, "--priority", metavar="N", help="Higher wins when rulesets change the model."
    ),
) -> None:
    entry = ruleset_entry(when, rule, priority)
    path = app_context(ctx).config_path
    update_config(path, lambda doc: add_ruleset(doc, name, entry))
    render.print_line(f"Added ruleset {name}.")


def set_(
    ctx: typer.Context,
    name: str = NAME_ARG,
    when: str | None = typer.Option(None, "--when", metavar="COND", help="New condition."),
    priority: int | None = typer.Option(None, "--priority", metavar="N", help="New priority."),
    add_rule: list[str] = typer.Option([], "--add-rule", metavar="R", help="Apply R too; repeat."),
    rm_rule: list[str] = typer.Option(
        [], "--rm-rule", metavar="R", help="Stop applying R; repeat."
    ),
) -> None:
    if when is None and priority is None and not add_rule and not rm_rule:
        raise UsageError("nothing to set: give --when, --priority, --add-rule or --rm-rule")
    path = app_context(ctx).config_path
    update_config(path, lambda doc: change_ruleset(doc, name, when, priority, add_rule, rm_rule))
    render.print_line(f"Updated ruleset {name}.")


def list_(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    doc, _ = load_document(app_context(ctx).config_path)
    rows = ruleset_rows(doc)
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.rulesets_grid(rows))


def show(ctx: typer.Context, name: str = NAME_ARG, as_json: bool = JSON_OPT) -> None:
    doc, _ = load_document(app_context(ctx).config_path)
    rows = [r for r in ruleset_rows(doc) if r["name"] == name]
    if not rows:
        raise NotFoundError(f'no ruleset named "{name}"')
    row = rows[0]
    if as_json:
        render.print_json(row)
        return
    render.print_detail(
        f"ruleset {name}",
        [
            ("when", row["when"]),
            ("rules", ", ".join(row["rules"])),
            ("priority", str(row["priority"])),
            ("enabled", "yes" if row["enabled"] else "no"),
        ],
    )


def rm(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: remove_ruleset(doc, name))
    render.print_line(f"Removed ruleset {name}.")


def enable(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: set_enabled(doc, name, True))
    render.print_line(f"Enabled ruleset {name}.")


def disable(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: set_enabled(doc, name, False))
    render.print_line(f"Disabled ruleset {name}.")
