"""``waystone rule add|set|rename|list|show|rm``: named trigger → action pairs.

A rule does nothing until a ruleset names it.  ``--set K=V`` writes any field of the
rule's TOML table; dotted keys reach into trigger tables (``--set usage.metric=cost_usd
--set usage.window=30d --set usage.over=10``).  The whole config is validated before
anything is written, so a wrong field is reported with its TOML path.  ``set`` takes the
same ``K=V`` pairs (``action`` and ``model`` included) to change a rule in place, and
``rename`` updates the rulesets that name the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from waystone_cli import render
from waystone_cli.configstore import load_document, parse_assignment, update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError
from waystone_cli.sections.rules import (
    add_rule,
    remove_rule,
    rename_rule,
    rule_entry,
    rule_rows,
    set_rule_fields,
)

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


def register(root: typer.Typer) -> None:
    app = typer.Typer(no_args_is_help=True)
    app.command("add", help="Add a rule: an optional trigger and an action.")(add)
    app.command("set", help="Change fields of a rule (K=V, dotted keys for triggers).")(set_)
    app.command("rename", help="Rename a rule, and every ruleset's use of it.")(rename)
    app.command("list", help="List rules and the rulesets that use them.")(list_)
    app.command("show", help="Show one rule.")(show)
    app.command("rm", help="Remove a rule no ruleset uses.")(rm)
    root.add_typer(
        app,
        name="rule",
        help="Manage rules (trigger → action); `waystone rules explain` shows how they apply.",
    )


def add(
    ctx: typer.Context,
    name: str = NAME_ARG,
    action: str = typer.Option(
        ...,
        "--action",
        metavar="A",
        help="block, change_model, fallback, limit_tokens, check_output, dataset, retain or capture.",
    ),
    model: str | None = typer.Option(
        None, "--model", metavar="GLOB", help="Trigger: the requested model."
    ),
    assignments: list[str] = typer.Option(
        [],
        "--set",
        metavar="K=V",
        help="Any other field; dotted keys for triggers (usage.over=10).",
    ),
) -> None:
    entry = rule_entry(action, model, assignments)
    path = app_context(ctx).config_path
    update_config(path, lambda doc: add_rule(doc, name, entry))
    render.print_line(f"Added rule {name}.")


def set_(
    ctx: typer.Context,
    name: str = NAME_ARG,
    assignments: list[str] = typer.Argument(..., metavar="K=V...", show_default=False),
) -> None:
    fields = [parse_assignment(text) for text in assignments]
    path = app_context(ctx).config_path
    update_config(path, lambda doc: set_rule_fields(doc, name, fields))
    render.print_line(f"Updated rule {name}.")


def rename(
    ctx: typer.Context,
    old: str = typer.Argument(..., metavar="OLD", show_default=False),
    new: str = typer.Argument(..., metavar="NEW", show_default=False),
) -> None:
    path = app_context(ctx).config_path
    users = update_config(path, lambda doc: rename_rule(doc, old, new))
    render.print_line(
        f"Renamed rule {old} to {new}" + (f" in {', '.join(users)}." if users else ".")
    )


def list_(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    doc, _ = load_document(app_context(ctx).config_path)
    rows = rule_rows(doc)
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.rules_grid(rows))


def show(ctx: typer.Context, name: str = NAME_ARG, as_json: bool = JSON_OPT) -> None:
    doc, _ = load_document(app_context(ctx).config_path)
    rows = [r for r in rule_rows(doc) if r["name"] == name]
    if not rows:
        raise NotFoundError(f'no rule named "{name}"')
    row = rows[0]
    if as_json:
        render.print_json(row)
        return
    pairs = [(key, _field_text(value)) for key, value in row["config"].items()]
    pairs.append(("used by", ", ".join(row["used_by"])))
    render.print_detail(f"rule {name}", pairs)


def rm(ctx: typer.Context, name: str = NAME_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: remove_rule(doc, name))
    render.print_line(f"Removed rule {name}.")


def _field_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return render.mapping_text(value)
    return render.scalar_text(value)
