"""``waystone group …``: the entity commands of users.py, plus membership.

Membership declared by the admin is the user's ``groups`` list in the TOML; ``link``
and ``unlink`` edit it.  ``link`` declares a user that is not in the config yet but has
been seen in traffic; an id that is neither is most likely a typo, so it is refused
unless ``--create`` says the user is new.  Links seen in traffic live in the
ledger and are shown by ``members`` but cannot be removed here: traffic made them.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from waystone_cli import render
from waystone_cli.commands.users import JSON_OPT, entity_app, seen_entity
from waystone_cli.configstore import update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError
from waystone_cli.entity_rows import member_rows
from waystone_cli.sections.entities import link_users, unlink_users

GROUP_ARG = typer.Argument(..., metavar="GROUP", show_default=False)
USERS_ARG = typer.Argument(..., metavar="USER...", show_default=False)


def register(root: typer.Typer) -> None:
    app = entity_app("group")
    app.command("link", help="Declare users as members of a group.")(link)
    app.command("unlink", help="Remove users from a group in the config.")(unlink)
    app.command("members", help="List a group's members, declared and seen in traffic.")(members)
    root.add_typer(
        app, name="group", help="Manage groups (orgs, teams): metadata, credits, members."
    )


def link(
    ctx: typer.Context,
    group: str = GROUP_ARG,
    users: list[str] = USERS_ARG,
    create: bool = typer.Option(
        False, "--create", help="Declare users that are neither in the config nor seen yet."
    ),
) -> None:
    if not create:
        refuse_unknown_users(ctx, users)
    path = app_context(ctx).config_path
    created = update_config(path, lambda doc: link_users(doc, group, users))
    render.print_line(f"Linked {', '.join(users)} to {group}.")
    if created:
        render.print_note(f"Declared new users: {', '.join(created)}.")


def unlink(ctx: typer.Context, group: str = GROUP_ARG, users: list[str] = USERS_ARG) -> None:
    path = app_context(ctx).config_path
    update_config(path, lambda doc: unlink_users(doc, group, users))
    render.print_line(f"Unlinked {', '.join(users)} from {group}.")


def members(ctx: typer.Context, group: str = GROUP_ARG, as_json: bool = JSON_OPT) -> None:
    config = app_context(ctx).load()
    seen = seen_entity(ctx, config, "group", group)
    if group not in config.groups and seen is None:
        raise NotFoundError(f'no group named "{group}"')
    rows = member_rows(group, config.users, seen["members"] if seen else [])
    if as_json:
        render.print_json(rows)
    else:
        render.print_grid(render.members_grid(rows))


def refuse_unknown_users(ctx: typer.Context, users: Sequence[str]) -> None:
    config = app_context(ctx).load_for_reading()
    unknown = [
        u for u in users if u not in config.users and seen_entity(ctx, config, "user", u) is None
    ]
    if unknown:
        listed = ", ".join(f'"{u}"' for u in unknown)
        raise NotFoundError(
            f"no user {listed} in the config or seen in traffic "
            "(check the id, or pass --create to declare a new user)"
        )
