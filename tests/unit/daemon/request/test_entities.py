"""The daemon's entity store hands out the same Entity while nothing about it changed
(the policy plan caches what its conditions say per entity object)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.request.entities import EntityStore
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


def names(store: EntityStore, ids: list[str], when: datetime = NOW, **metadata: Any) -> None:
    for ident in ids:
        store.observe(Identity(user=EntityRef(ident, metadata)), Config(), when)


def test_past_the_bound_the_least_recently_seen_are_evicted() -> None:
    store = EntityStore()
    names(store, [f"u{i}" for i in range(8)])
    names(store, ["u0", "u1"])  # seen again: now the most recent
    assert store.evictable(keep=10) == []
    chosen = store.evictable(keep=4)  # down to three quarters of the bound
    assert [e.id for e in chosen] == ["u2", "u3", "u4", "u5", "u6"]
    assert store.evict(chosen) == [("user", f"u{i}") for i in range(2, 7)]
    assert (store.count("user"), store.has("user", "u0"), store.has("user", "u2")) == (
        3,
        True,
        False,
    )


def test_an_entity_whose_metadata_changed_after_it_was_chosen_stays() -> None:
    store = EntityStore()
    names(store, ["u0", "u1", "u2"])
    chosen = store.evictable(keep=1)
    names(store, ["u0"], tier="pro")  # merged while the ledger flushed: not in it yet
    names(store, ["u1"])  # seen again, nothing new: the ledger holds all it knows
    assert store.evict(chosen) == [("user", "u1"), ("user", "u2")]
    assert store.has("user", "u0")


def test_a_restored_entity_has_its_first_seen_and_metadata_back() -> None:
    store = EntityStore()
    names(store, ["alice"], when=NOW - timedelta(days=40), tier="free")
    store.evict(store.evictable(keep=0))
    assert not store.has("user", "alice")
    store.restore(
        "user", "alice", (NOW - timedelta(days=40)).replace(tzinfo=None), {"tier": "free"}
    )
    user, _ = store.observe(Identity(user=EntityRef("alice")), Config(), NOW)
    assert user is not None
    assert (user.metadata, user.first_seen) == ({"tier": "free"}, NOW - timedelta(days=40))
    store.restore("user", "alice", NOW, {"tier": "stale"})  # back already: kept as it is
    assert store.entity("user", "alice", Config()).metadata == {"tier": "free"}
