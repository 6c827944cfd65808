"""Reading ``[users.*]`` and ``[groups.*]``: ids, metadata, group lists and credits."""

from __future__ import annotations

from typing import Any

from waystone_cli.core.config.snapshot import Credits, GroupConfig, UserConfig
from waystone_cli.core.config.table import Table, check_id, check_window
from waystone_cli.core.errors import ConfigError


def _credits(t: Table) -> Credits | None:
    if "credits" not in t.data:
        t.seen.add("credits")
        return None
    c = t.table("credits")
    credits = Credits(
        usd=float(c.get("usd", (int, float), 0.0)), window=c.get("window", str, "month")
    )
    if "usd" not in c.data:
        raise ConfigError(f"{c.path}: usd is required")
    c.done()
    if credits.usd < 0:
        raise ConfigError(f"{c.at('usd')}: must not be negative")
    check_window(credits.window, c.at("window"))
    return credits


def _metadata(t: Table) -> dict[str, Any]:
    meta = t.table("metadata")
    for k, v in meta.data.items():
        if isinstance(v, (dict, list)):
            raise ConfigError(f"{meta.at(k)}: metadata values must be scalars")
    return dict(meta.data)


def user_config(uid: str, t: Table) -> UserConfig:
    check_id(uid, t.path)
    u = UserConfig(
        id=uid,
        metadata=_metadata(t),
        groups=t.str_list("groups"),
        credits=_credits(t),
        added=t.date_text("added"),
    )
    t.done()
    return u


def group_config(gid: str, t: Table) -> GroupConfig:
    check_id(gid, t.path)
    g = GroupConfig(
        id=gid,
        metadata=_metadata(t),
        credits=_credits(t),
        added=t.date_text("added"),
    )
    t.done()
    return g
