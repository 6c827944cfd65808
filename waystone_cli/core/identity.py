"""Who a request is for: the end user and/or group named in ``metadata.waystone``.

The value is a JSON-encoded string (OpenAI metadata values are strings) or an already
decoded object of the shape ``{"user": ID | {"id": ID, "metadata": {...}}, "group": ...}``;
both keys are optional.  The headers ``X-Waystone-User`` / ``X-Waystone-Group`` name
entities too (ids only).

Malformed identity is refused with an ``IdentityError`` (400) naming what is wrong:
silently dropping it would let a request bypass its user's quota.  Ids follow
``ID_RE`` from the config (letters, digits and ``._@:+-_``, starting with a letter or
digit, 1 to 128 characters), the same rule as ids declared in the TOML, so every entity
seen in traffic can be addressed with ``waystone user show ID`` and declared in the TOML.
Metadata values must be JSON scalars other than null (strings, numbers, booleans): the
condition language compares scalars, and TOML has no null.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from waystone_cli.core import jsontext
from waystone_cli.core.config import ID_RE
from waystone_cli.core.errors import IdentityError

MAX_IDENTITY_BYTES = 16 * 1024
MAX_ID_CHARS = 128
MAX_METADATA_KEY_CHARS = 64
WHERE = "metadata.waystone"
_ENTITY_KEYS = ("id", "metadata")
_HEADERS = {"user": "X-Waystone-User", "group": "X-Waystone-Group"}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Ids that passed ``_check_id``: a request naming a known id skips the regex (and the
# error labels built for it).  Emptied when full: it only saves time.
_VALID_IDS: set[str] = set()
_VALID_IDS_MAX = 100_000
# Identity strings parsed before: a client sends the same string with every request of a
# user, and decoding and checking it again is a measurable share of a request.  An
# Identity is immutable (tuples, read-only metadata), so one can be handed out again.
# Emptied when full; a string that fails to parse is never kept.
_PARSED: dict[str, Identity] = {}
_PARSED_MAX = 16_384


# Tuples, not frozen dataclasses: three are built for every request, and a frozen
# dataclass sets each field through ``object.__setattr__``.
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class EntityRef(NamedTuple):
    """An entity as a request names it: its id and the metadata sent inline (if any)."""

    id: str
    metadata: Mapping[str, Any] = _NO_METADATA


class Identity(NamedTuple):
    user: EntityRef | None = None
    group: EntityRef | None = None


def parse_identity(value: Any, where: str = WHERE) -> Identity:
    """The identity in ``value`` (a JSON string or an object); ``where`` names it in errors."""
    text = value if isinstance(value, str) else None
    if text is not None:
        parsed = _PARSED.get(text)
        if parsed is not None:
            return parsed
        if len(text.encode("utf-8")) > MAX_IDENTITY_BYTES:
            raise IdentityError(f"{where}: over 16 KiB", param=where)
        value = _decode(text, where)
    elif isinstance(value, Mapping):
        if len(json.dumps(value, default=str).encode("utf-8")) > MAX_IDENTITY_BYTES:
            raise IdentityError(f"{where}: over 16 KiB", param=where)
    else:
        raise IdentityError(
            f"{where}: expected a JSON-encoded string or an object, got {_kind(value)}", param=where
        )
    if type(value) is not dict and not isinstance(value, Mapping):  # dict: no ABC check
        raise IdentityError(f"{where}: expected a JSON object, got {_kind(value)}", param=where)
    for key in value:
        if key not in ("user", "group"):
            raise IdentityError(
                f'{where}: unknown key "{key}" (expected "user" and/or "group")', param=where
            )
    identity = Identity(
        _entity(value.get("user"), where, "user"), _entity(value.get("group"), where, "group")
    )
    if text is not None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = identity
    return identity


def identity_from_headers(user: str | None, group: str | None) -> Identity:
    """The identity named by ``X-Waystone-User`` / ``X-Waystone-Group`` (None = absent)."""
    return Identity(
        user=None if user is None else EntityRef(_check_id(user.strip(), _HEADERS["user"])),
        group=None if group is None else EntityRef(_check_id(group.strip(), _HEADERS["group"])),
    )


def with_fallback_user(identity: Identity, user_id: Any, where: str) -> Identity:
    """``identity``, with ``user_id`` (Anthropic's ``metadata.user_id``) as its user when
    it names none; a ``user_id`` that is not a string is left alone."""
    if identity.user is not None or not isinstance(user_id, str):
        return identity
    return identity._replace(user=EntityRef(_check_id(user_id.strip(), where)))


def without_metadata(identity: Identity) -> Identity:
    """The same entities with none of the metadata the request sent."""
    return Identity(
        user=None if identity.user is None else EntityRef(identity.user.id),
        group=None if identity.group is None else EntityRef(identity.group.id),
    )


def combine(body: Identity, headers: Identity) -> Identity:
    """One identity from the body's and the headers'; naming two different ids is an error."""
    return Identity(
        user=_one(body.user, headers.user, "user"),
        group=_one(body.group, headers.group, "group"),
    )


def pop_identity(body: dict[str, Any]) -> tuple[Identity, dict[str, Any]]:
    """The identity in ``body["metadata"]["waystone"]`` and the body to forward without it.

    The input is never mutated.  When there is nothing to remove the same dict is returned
    (no copy on the hot path); otherwise a shallow copy whose ``metadata`` lacks ``waystone``,
    and lacks ``metadata`` altogether if nothing else was in it.  A ``metadata`` that is
    null is left alone; one that is not an object is an error.
    """
    metadata = body.get("metadata")
    if metadata is None:
        return Identity(), body
    if not isinstance(metadata, dict):
        raise IdentityError(
            f"metadata: expected an object, got {_kind(metadata)}", param="metadata"
        )
    if "waystone" not in metadata:
        return Identity(), body
    identity = parse_identity(metadata["waystone"])
    rest = {k: v for k, v in metadata.items() if k != "waystone"}
    forwarded = {k: v for k, v in body.items() if k != "metadata"}
    if rest:
        forwarded["metadata"] = rest
    return identity, forwarded


def _decode(text: str, where: str) -> Any:
    try:
        return jsontext.loads_client(text)
    except jsontext.ClientJSONError as err:
        raise IdentityError(f"{where}: invalid JSON: {err}", param=where) from err


def _entity(value: Any, within: str, kind: str) -> EntityRef | None:
    if value is None:
        return None
    if type(value) is str and value in _VALID_IDS:  # the usual case: an id seen before
        return EntityRef(value)
    where = f"{within}.{kind}"
    if isinstance(value, str):
        return EntityRef(_check_id(value, where))
    if not isinstance(value, Mapping) or "id" not in value:
        raise IdentityError(f'{where}: expected a string or an object with "id"', param=where)
    for key in value:
        if key not in _ENTITY_KEYS:
            raise IdentityError(
                f'{where}: unknown key "{key}" (expected "id" and "metadata")', param=where
            )
    ident = value["id"]
    if not isinstance(ident, str):
        raise IdentityError(f"{where}.id: expected a string, got {_kind(ident)}", param=where)
    return EntityRef(
        _check_id(ident, f"{where}.id"), _metadata(value.get("metadata"), f"{where}.metadata")
    )


def _check_id(ident: str, where: str) -> str:
    if ID_RE.match(ident):  # the usual case: a valid id has no control characters
        if len(_VALID_IDS) >= _VALID_IDS_MAX:
            _VALID_IDS.clear()
        _VALID_IDS.add(ident)
        return ident
    if not ident:
        raise IdentityError(f"{where}: must not be empty", param=where)
    if len(ident) > MAX_ID_CHARS:
        raise IdentityError(f"{where}: over {MAX_ID_CHARS} characters", param=where)
    if _has_control(ident):
        raise IdentityError(f"{where}: contains control characters", param=where)
    if not ID_RE.match(ident):
        raise IdentityError(
            f"{where}: {json.dumps(ident)} is not a valid id (letters, digits and ._@:+-_, "
            "starting with a letter or digit)",
            param=where,
        )
    return ident


def _metadata(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return _NO_METADATA
    if not isinstance(value, Mapping):
        raise IdentityError(f"{where}: expected an object, got {_kind(value)}", param=where)
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{where}.{key}"
        if not key or len(key) > MAX_METADATA_KEY_CHARS or _has_control(key):
            raise IdentityError(
                f"{where}: invalid key {json.dumps(key)} (1 to {MAX_METADATA_KEY_CHARS} "
                "characters, no control characters)",
                param=where,
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise IdentityError(f"{path}: must be a finite number", param=where)
        if item is None or not isinstance(item, str | int | float | bool):
            raise IdentityError(
                f"{path}: metadata values must be JSON scalars (string, number or boolean), "
                f"got {_kind(item)}",
                param=where,
            )
        out[key] = item
    return MappingProxyType(out) if out else _NO_METADATA  # read-only: see ``_PARSED``


def _one(body: EntityRef | None, header: EntityRef | None, kind: str) -> EntityRef | None:
    if body is None:
        return header
    if header is not None and header.id != body.id:
        raise IdentityError(
            f"{WHERE}.{kind} ({json.dumps(body.id)}) and {_HEADERS[kind]} "
            f"({json.dumps(header.id)}) name different {kind}s",
            param=f"{WHERE}.{kind}",
        )
    return body


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
