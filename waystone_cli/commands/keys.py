"""``waystone key create|list|revoke``: gateway keys for client applications.

A key is ``ws-`` plus 32 random bytes (URL-safe base64).  It is printed once, alone on
stdout so a script can capture it; only ``sha256:<hex>`` of it is stored.  SHA-256
without a salt is enough here: the key is 256 random bits, so there is nothing to
guess, and the gateway can look it up with one hash per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from waystone_cli import render
from waystone_cli.configstore import Document, load_document, timestamp, update_config
from waystone_cli.context import app_context
from waystone_cli.core.config import ServerConfig
from waystone_cli.core.errors import NotFoundError, WaystoneError
from waystone_cli.core.exposure import open_without_keys

NAME_ARG = typer.Argument(..., metavar="NAME", show_default=False)
KEY_PREFIX = "ws-"


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


def new_key() -> str:
    import secrets

    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def add_key(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    table = doc.setdefault("keys", {})
    if name in table:
        raise WaystoneError(f'key "{name}" already exists (revoke it first to replace it)')
    table[name] = dict(entry)


def remove_key(doc: Document, name: str) -> int:
    """Remove the key; return how many are left.  The last one stays while the configured
    host is beyond loopback (the daemon would refuse the reload and keep serving it)."""
    keys = doc.get("keys", {})
    if name not in keys:
        raise NotFoundError(f'no key named "{name}"')
    host = str(doc.get("server", {}).get("host", ServerConfig().host))
    if open_without_keys(host, len(keys) - 1):
        raise WaystoneError(
            f'refusing to revoke "{name}", the last gateway key: [server] host is {host}, '
            "and beyond loopback the gateway never runs without a key (create another key "
            "first, or set host to 127.0.0.1)"
        )
    del keys[name]
    return len(keys)


def key_rows(doc: Document) -> list[dict[str, Any]]:
    return [
        {"name": name, "created": _iso(body.get("created")), "hash": body["hash"]}
        for name, body in doc.get("keys", {}).items()
    ]


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value.isoformat())
