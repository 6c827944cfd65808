"""The daemon's entity store hands out the same Entity while nothing about it changed
(the policy plan caches what its conditions say per entity object)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.entities import EntityStore
from waystone_cli.core.config import Config, parse_config, parse_toml
from waystone_cli.core.entities import Entity
from waystone_cli.core.identity import EntityRef, Identity

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def declared(tier: str) -> Config:
    return parse_config(parse_toml(f'[users.alice]\nmetadata = {{ tier = "{tier}" }}\n'))


def seen(store: EntityStore, config: Config, **metadata: Any) -> Entity:
    user, _ = store.observe(Identity(user=EntityRef("bob", metadata)), config, NOW)
    assert user is not None
    return user


def test_the_same_entity_comes_back_until_its_metadata_changes() -> None:
    store, config = EntityStore(), Config()
    first = seen(store, config, tier="free", n=1)
    same = [seen(store, config), seen(store, config, tier="free"), seen(store, config, n=1)]
    assert all(e is first for e in same)
    changed = seen(store, config, n=True)  # true is not 1 to a condition
    assert changed is not first
    assert (changed.metadata, seen(store, config, n=True) is changed) == (
        {"tier": "free", "n": True},
        True,
    )


def test_a_new_declaration_builds_the_entity_again() -> None:
    store, old, new = EntityStore(), declared("free"), declared("pro")
    store.observe(Identity(user=EntityRef("alice")), old, NOW - timedelta(days=1))
    first = store.entity("user", "alice", old)
    assert store.entity("user", "alice", old) is first
    again = store.entity("user", "alice", new)
    assert (first.metadata, again.metadata) == ({"tier": "free"}, {"tier": "pro"})
    assert store.entity("user", "alice", new) is again
