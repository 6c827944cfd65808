"""``waystone user …`` and the entity commands it shares with ``waystone group …``.

Users and groups live in two places: the ones the admin declares are in the TOML, the
ones traffic named are in the ledger.  ``list`` and ``show`` merge both
(``entity_rows``).  ``add``, ``set``, ``unset`` and ``rm`` edit only the TOML
(``sections.entities``), so they act on declared entities; ``add`` also declares an entity
first seen in traffic.

The ledger is asked only when a ledger file or the daemon's socket exists, so listing
a plain config never imports DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from waystone_cli import render
from waystone_cli.configstore import update_config
from waystone_cli.context import app_context
from waystone_cli.core.entities import Kind
from waystone_cli.core.errors import NotFoundError, UsageError
from waystone_cli.entity_rows import entity_rows
from waystone_cli.sections.entities import (
    add_entity,
    budget,
    new_entry,
    parse_metadata,
    remove_entity,
    set_fields,
    unset_fields,
)

if TYPE_CHECKING:
    from waystone_cli.core.config import Config


def register(root: typer.Typer) -> None:
    root.add_typer(entity_app("user"), name="user", help="Manage users: metadata, groups, credits.")


def entity_app(kind: Kind) -> typer.Typer:
    """The add/list/show/set/unset/rm commands for ``kind``."""
    app = typer.Typer(no_args_is_help=True)
    _add_command(app, kind)
    _list_command(app, kind)
    _show_command(app, kind)
    _set_command(app, kind)
    _unset_command(app, kind)
    _rm_command(app, kind)
    return app


# --- commands -------------------------------------------------------------------------

ID_ARG = typer.Argument(..., metavar="ID", show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")
META_OPT = typer.Option([], "--meta", metavar="K=V", help="Metadata; repeat for more keys.")
USD_OPT = typer.Option(None, "--credits-usd", metavar="USD", help="Budget in USD per window.")
WINDOW_OPT = typer.Option(
    None, "--credits-window", metavar="W", help="Budget window: day, week, month or e.g. 30d."
)


def _add_command(app: typer.Typer, kind: Kind) -> None:
    def add(
        ctx: typer.Context,
        ident: str = ID_ARG,
        meta: list[str] = META_OPT,
        # Hidden for groups (a group has no groups), yet still parsed to say so.
        group: list[str] = typer.Option(
            [], "--group", metavar="G", help="Member of G; repeat.", hidden=kind == "group"
        ),
        credits_usd: float | None = USD_OPT,
        credits_window: str | None = WINDOW_OPT,
    ) -> None:
        if kind == "group" and group:
            raise UsageError("--group applies to users only")
        entry = new_entry(parse_metadata(meta), group, budget(credits_usd, credits_window))
        path = app_context(ctx).config_path
        update_config(path, lambda doc: add_entity(doc, kind, ident, entry))
        render.print_line(f"Added {kind} {ident}.")

    app.command("add", help=f"Declare a {kind} in the config.")(add)


def _list_command(app: typer.Typer, kind: Kind) -> None:
    def list_(
        ctx: typer.Context,
        where: str | None = typer.Option(
            None, "--where", metavar="COND", help='Only those matching a condition ("tier = free").'
        ),
        as_json: bool = JSON_OPT,
    ) -> None:
        config = app_context(ctx).load_for_reading()
        seen = seen_entities(ctx, config, kind)
        rows = entity_rows(kind, _declared(config, kind), seen, where, datetime.now(UTC))
        if as_json:
            render.print_json(rows)
        else:
            render.print_grid(
                render.users_grid(rows) if kind == "user" else render.groups_grid(rows)
            )

    app.command("list", help=f"List {kind}s declared in the config and seen in traffic.")(list_)


def _show_command(app: typer.Typer, kind: Kind) -> None:
    def show(ctx: typer.Context, ident: str = ID_ARG, as_json: bool = JSON_OPT) -> None:
        config = app_context(ctx).load_for_reading()
        found = seen_entity(ctx, config, kind, ident)
        seen = [found] if found else []
        rows = [r for r in entity_rows(kind, _declared(config, kind), seen) if r["id"] == ident]
        if not rows:
            raise NotFoundError(f'no {kind} named "{ident}"')
        if as_json:
            render.print_json(rows[0])
        else:
            render.print_detail(f"{kind} {ident}", render.entity_pairs(kind, rows[0]))

    app.command("show", help=f"Show one {kind}: metadata, credits, where it comes from.")(show)


def _set_command(app: typer.Typer, kind: Kind) -> None:
    def set_(
        ctx: typer.Context,
        ident: str = ID_ARG,
        assignments: list[str] = typer.Argument(None, metavar="K=V...", show_default=False),
        credits_usd: float | None = USD_OPT,
        credits_window: str | None = WINDOW_OPT,
    ) -> None:
        meta = parse_metadata(assignments or [])
        if not meta and credits_usd is None and credits_window is None:
            raise UsageError("nothing to set: give K=V pairs or --credits-usd/--credits-window")
        path = app_context(ctx).config_path
        update_config(
            path, lambda doc: set_fields(doc, kind, ident, meta, credits_usd, credits_window)
        )
        render.print_line(f"Updated {kind} {ident}.")

    app.command("set", help=f"Set metadata (K=V, a TOML scalar or text) or credits of a {kind}.")(
        set_
    )


def _unset_command(app: typer.Typer, kind: Kind) -> None:
    def unset(
        ctx: typer.Context,
        ident: str = ID_ARG,
        keys: list[str] = typer.Argument(None, metavar="K...", show_default=False),
        drop_credits: bool = typer.Option(False, "--credits", help="Remove the credits budget."),
    ) -> None:
        if not keys and not drop_credits:
            raise UsageError("nothing to unset: give metadata keys or --credits")
        path = app_context(ctx).config_path
        update_config(path, lambda doc: unset_fields(doc, kind, ident, keys or [], drop_credits))
        render.print_line(f"Updated {kind} {ident}.")

    app.command("unset", help=f"Remove metadata keys (or --credits) from a {kind}.")(unset)


def _rm_command(app: typer.Typer, kind: Kind) -> None:
    def rm(ctx: typer.Context, ident: str = ID_ARG) -> None:
        path = app_context(ctx).config_path
        update_config(path, lambda doc: remove_entity(doc, kind, ident))
        render.print_line(f"Removed {kind} {ident} from the config.")

    app.command("rm", help=f"Remove a {kind} from the config (its ledger history stays).")(rm)


# --- the ledger's side --------------------------------------------------


def _declared(config: Config, kind: Kind) -> Mapping[str, Any]:
    return config.users if kind == "user" else config.groups


def seen_entities(ctx: typer.Context, config: Config, kind: Kind) -> list[dict[str, Any]]:
    """Entities the ledger has seen; none (and no DuckDB import) when there is no ledger."""
    found = _ledger_query(ctx, config, "seen_entities", kind=kind)
    return [] if found is None else list(found)


def seen_entity(
    ctx: typer.Context, config: Config, kind: Kind, ident: str
) -> dict[str, Any] | None:
    """One entity as traffic saw it, or None (also when there is no ledger)."""
    found = _ledger_query(ctx, config, "seen_entity", kind=kind, id=ident)
    return dict(found) if found else None


def _ledger_query(ctx: typer.Context, config: Config, name: str, **params: Any) -> Any:
    """Like ``AppContext.query``, with the config already loaded (a big one takes a while
    to parse twice); None when there is neither a ledger file nor a daemon socket."""
    app = app_context(ctx)
    ledger, socket, url = app.ledger_path(config), app.socket_path(), app.ledger_url(config)
    if url is None and not ledger.exists() and not socket.exists():
        return None
    from waystone_cli.ledger.access import run_query

    return run_query(name, ledger_path=ledger, socket_path=socket, ledger_url=url, **params)
