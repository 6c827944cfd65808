"""The ``[keys]`` section: gateway keys, made, stored, revoked and listed.

A key is ``ws-`` plus 32 random bytes (URL-safe base64); only ``sha256:<hex>`` of it is
stored.  SHA-256 without a salt is enough here: the key is 256 random bits, so there is
nothing to guess, and the gateway can look it up with one hash per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waystone_cli.configstore import Document
from waystone_cli.core.config import ServerConfig
from waystone_cli.core.errors import NotFoundError, WaystoneError
from waystone_cli.core.exposure import open_without_keys
from waystone_cli.sections import add_entry

KEY_PREFIX = "ws-"


def new_key() -> str:
    import secrets

    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def add_key(doc: Document, name: str, entry: Mapping[str, Any]) -> None:
    add_entry(doc, "keys", "key", name, entry, " (revoke it first to replace it)")


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
