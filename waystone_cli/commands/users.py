"""``waystone user …`` and the entity commands it shares with ``waystone group …``.

Users and groups live in two places: the ones the admin declares are in the TOML, the
ones traffic named are in the ledger.  ``list`` and ``show`` merge both (declared
metadata wins key by key, as in the gateway) and mark each row ``declared`` and/or
``seen``.  ``add``, ``set``, ``unset`` and ``rm`` edit only the TOML, so they act on
declared entities; ``add`` also declares an entity first seen in traffic.

The ledger is asked only when a ledger file or the daemon's socket exists, so listing
a plain config never imports DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

import typer

from waystone_cli import render
from waystone_cli.configstore import Document, parse_assignment, timestamp, update_config
from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError, UsageError, WaystoneError

if TYPE_CHECKING:
    from waystone_cli.core.config import Config
    from waystone_cli.core.entities import Entity

Kind = Literal["user", "group"]
SECTION: dict[str, str] = {"user": "users", "group": "groups"}
META_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


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
        rows = entity_rows(kind, _declared(config, kind), seen_entities(ctx, config, kind))
        if where is not None:
            rows = filter_rows(kind, rows, where, datetime.now(UTC))
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
            render.print_detail(f"{kind} {ident}", detail_pairs(kind, rows[0]))

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


# --- argument parsing -----------------------------------------------------------------


def parse_metadata(assignments: Sequence[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for text in assignments:
        key, value = parse_assignment(text)
        check_meta_key(key)
        meta[key] = value
    return meta


def check_meta_key(key: str) -> None:
    if not key or not set(key) <= META_KEY_CHARS:
        raise UsageError(f'invalid metadata key "{key}" (letters, digits, _ and -)')


def budget(usd: float | None, window: str | None) -> dict[str, Any] | None:
    if usd is None:
        if window is not None:
            raise UsageError("--credits-window needs --credits-usd")
        return None
    return {"usd": whole(usd), "window": window or "month"}


def whole(number: float) -> float | int:
    """``10.0`` → ``10``: the TOML then reads as the admin typed it."""
    return int(number) if number.is_integer() else number


def new_entry(
    meta: Mapping[str, Any], groups: Sequence[str], budget: Mapping[str, Any] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if meta:
        entry["metadata"] = dict(meta)
    if groups:
        entry["groups"] = list(dict.fromkeys(groups))
    if budget:
        entry["credits"] = dict(budget)
    entry["added"] = timestamp()
    return entry


# --- edits of the TOML document -------------------------------------------------------


def add_entity(doc: Document, kind: Kind, ident: str, entry: Mapping[str, Any]) -> None:
    table = doc.setdefault(SECTION[kind], {})
    if ident in table:
        raise WaystoneError(
            f'{kind} "{ident}" already exists (change it with `waystone {kind} set`)'
        )
    table[ident] = dict(entry)


def declared_entry(doc: Document, kind: Kind, ident: str) -> dict[str, Any]:
    entry = doc.get(SECTION[kind], {}).get(ident)
    if not isinstance(entry, dict):
        raise NotFoundError(
            f'no {kind} named "{ident}" in the config (add it with `waystone {kind} add`)'
        )
    return entry


def set_fields(
    doc: Document,
    kind: Kind,
    ident: str,
    meta: Mapping[str, Any],
    usd: float | None,
    window: str | None,
) -> None:
    entry = declared_entry(doc, kind, ident)
    if meta:
        entry.setdefault("metadata", {}).update(meta)
    if usd is not None:
        entry["credits"] = {
            "usd": whole(usd),
            "window": window or entry.get("credits", {}).get("window", "month"),
        }
    elif window is not None:
        if "credits" not in entry:
            raise UsageError(f'{kind} "{ident}" has no credits: give --credits-usd too')
        entry["credits"]["window"] = window


def unset_fields(
    doc: Document, kind: Kind, ident: str, keys: Sequence[str], drop_credits: bool
) -> None:
    entry = declared_entry(doc, kind, ident)
    meta = entry.get("metadata", {})
    for key in keys:
        if key not in meta:
            raise WaystoneError(f'{kind} "{ident}" has no metadata key "{key}"')
        del meta[key]
    if not meta:
        entry.pop("metadata", None)
    if drop_credits:
        if "credits" not in entry:
            raise WaystoneError(f'{kind} "{ident}" has no credits')
        del entry["credits"]


def remove_entity(doc: Document, kind: Kind, ident: str) -> None:
    declared_entry(doc, kind, ident)
    if kind == "group":
        members = [u for u, e in doc.get("users", {}).items() if ident in e.get("groups", [])]
        if members:
            raise WaystoneError(
                f'group "{ident}" still has members in the config: {", ".join(members)} '
                f"(unlink them with `waystone group unlink {ident} USER...`)"
            )
    del doc[SECTION[kind]][ident]


# --- rows: declared and seen, merged --------------------------------------------------


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
    ledger, socket = app.ledger_path(config), app.socket_path()
    if not ledger.exists() and not socket.exists():
        return None
    from waystone_cli.ledger.access import run_query

    return run_query(name, ledger_path=ledger, socket_path=socket, **params)


def entity_rows(
    kind: Kind, declared: Mapping[str, Any], seen: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One JSON-able row per entity, declared or seen, sorted by id."""
    seen_by_id = {s["id"]: s for s in seen}
    rows = []
    for ident in sorted(set(declared) | set(seen_by_id)):
        rows.append(_row(kind, ident, declared.get(ident), seen_by_id.get(ident)))
    return rows


def _row(kind: Kind, ident: str, decl: Any, seen: Mapping[str, Any] | None) -> dict[str, Any]:
    seen = seen or {}
    metadata = dict(seen.get("metadata") or {})
    metadata.update(decl.metadata if decl else {})
    row: dict[str, Any] = {"id": ident, "metadata": metadata}
    if kind == "user":
        declared_groups = list(decl.groups) if decl else []
        extra = [g for g in seen.get("groups") or [] if g not in declared_groups]
        row["groups"] = declared_groups + sorted(extra)
    budget = decl.credits if decl else None
    row["credits"] = {"usd": budget.usd, "window": budget.window} if budget else None
    row["declared"] = decl is not None
    row["seen"] = bool(seen)
    first = [
        t for t in (_instant(decl.added if decl else None), _instant(seen.get("first_seen"))) if t
    ]
    row["first_seen"] = min(first).isoformat() if first else None
    last = _instant(seen.get("last_seen"))
    row["last_seen"] = last.isoformat() if last else None
    return row


def _instant(value: Any) -> datetime | None:
    """A time from the TOML (date or date-time) or the ledger (naive UTC), as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime) and isinstance(value, date):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def filter_rows(
    kind: Kind, rows: Sequence[dict[str, Any]], where: str, now: datetime
) -> list[dict[str, Any]]:
    """The rows whose entity the ruleset condition ``where`` selects."""
    from waystone_cli.core.conditions import ConditionError, parse_condition

    try:
        condition = parse_condition(where)
    except ConditionError as err:
        raise UsageError(f"--where: {err}") from err
    return [row for row in rows if condition.matches(_entity(kind, row), now)]


def _entity(kind: Kind, row: Mapping[str, Any]) -> Entity:
    from waystone_cli.core.entities import Entity

    budget = row["credits"] or {}
    return Entity(
        kind=kind,
        id=row["id"],
        metadata=row["metadata"],
        first_seen=_instant(row["first_seen"]),
        declared=row["declared"],
        credits_usd=budget.get("usd"),
        credits_window=budget.get("window"),
    )


def detail_pairs(kind: Kind, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = [(f"metadata.{k}", render.scalar_text(v)) for k, v in row["metadata"].items()]
    if kind == "user":
        pairs.append(("groups", ", ".join(row["groups"])))
    pairs.append(("credits", render.credits_text(row["credits"])))
    pairs.append(("source", "+".join(s for s in ("declared", "seen") if row[s])))
    pairs.append(("first seen", row["first_seen"] or ""))
    pairs.append(("last seen", row["last_seen"] or ""))
    return pairs
