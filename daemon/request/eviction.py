"""Bounded memory per end user: idle entities and counters leave memory, and come back.

A sweep (every ``SWEEP_EVERY_S``) drops the least recently seen entities past
``KEEP_ENTITIES`` per kind, and the quiet usage series (no reservation, no rate entry)
last charged more than ``IDLE_MINUTES`` ago or, past ``KEEP_SERIES``, the least
recently charged.  It drops them only once the ledger holds everything they hold: it
chooses, waits for the ledger writer to commit every row submitted so far, then drops
those of the chosen that no request changed meanwhile.  An entity named by a request in
flight (its series holds a reservation) stays: that request's row is not submitted yet.
Each dropped key goes into a Bloom filter, which takes the same memory for ten keys or
ten million.

A request naming a user or group that is not in memory, and that the filter says may
have been evicted, first recalls it: its ledger row (first seen, metadata) and its
usage at minute resolution over the counters' whole span, the same buckets the live
counters held, so its budgets read exactly what they would have read had it never
left.  A brand-new id costs nothing; one the filter wrongly suspects costs one
needless look-up.  A recall holds a lock from its read to its restore, and a sweep
drops nothing meanwhile, so a recall never restores rows older than a charge a sweep
dropped; requests for an id being recalled wait for it on the same lock.  The sweep
waits for the ledger outside that lock, so recalls never wait for a flush.

Usage is rebuilt from ``requests`` rows, so counters are evicted only while no
``retain`` rule prunes rows younger than the counters' span (pruning would remove
usage a budget still counts).  See docs/design.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from daemon.maintenance import stop_tasks
from daemon.request.entities import Evictable as EntityEvictable
from daemon.state import CONFIG, COUNTERS, ENTITIES, LEDGER
from waystone_cli.core.bloom import BloomFilter
from waystone_cli.core.config import Config
from waystone_cli.core.counters import Key, UsageCounters, member_key, series_keys
from waystone_cli.core.entities import Kind
from waystone_cli.core.errors import LedgerUnavailable
from waystone_cli.core.identity import Identity
from waystone_cli.ledger.dialect import Connection, database_errors

log = logging.getLogger("waystone.eviction")
SWEEP_EVERY_S = 30.0
KEEP_ENTITIES = 20_000  # per kind
KEEP_SERIES = 50_000
IDLE_MINUTES = 10
# A sweep gives up for this round when the ledger is slow to commit (or failing).
FLUSH_TIMEOUT_S = 10.0


@dataclass
class Evictions:
    """The keys evicted so far (a Bloom filter) and the lock between sweeps and recalls."""

    evicted: BloomFilter = field(default_factory=BloomFilter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# Kept beside its class, not in ``daemon.state``, which this module reads.
EVICTIONS = web.AppKey("evictions", Evictions)


@dataclass(frozen=True)
class _Missing:
    entities: tuple[tuple[Kind, str], ...]
    series: tuple[Key, ...]

    def __bool__(self) -> bool:
        return bool(self.entities or self.series)


async def recall(app: web.Application, identity: Identity) -> None:
    """Put back what was evicted of the request's user and group, before it is read."""
    user = identity.user.id if identity.user else None
    group = identity.group.id if identity.group else None
    if _in_memory(app, user, group) or not _missing(app, user, group):
        return  # the usual cases (known and in memory, or brand new): no await at all
    async with app[EVICTIONS].lock:
        missing = _missing(app, user, group)  # another request may have recalled them
        if not missing:
            return
        keep = app[COUNTERS].keep
        try:
            entities, rows = await app[LEDGER].run_in_db(
                lambda con: _read(con, missing, user, group, keep)
            )
        except database_errors() as err:
            log.warning("cannot recall %s/%s from the ledger: %s", user, group, err)
            raise LedgerUnavailable(
                "the gateway cannot read this user's usage from its ledger; try again"
            ) from None
        store = app[ENTITIES]
        for (kind, ident), seen in zip(missing.entities, entities, strict=True):
            if seen is not None:
                store.restore(kind, ident, seen.first_seen, seen.metadata)
        for key in missing.series:
            app[COUNTERS].restore(key, rows)


def _in_memory(app: web.Application, user: str | None, group: str | None) -> bool:
    store, counters = app[ENTITIES], app[COUNTERS]
    if user and not (store.has("user", user) and counters.has(("user", user))):
        return False
    if group and not (store.has("group", group) and counters.has(("group", group))):
        return False
    return not (user and group) or counters.has(member_key(user, group))


def _missing(app: web.Application, user: str | None, group: str | None) -> _Missing:
    evicted, store, counters = app[EVICTIONS].evicted, app[ENTITIES], app[COUNTERS]
    named: tuple[tuple[Kind, str | None], ...] = (("user", user), ("group", group))
    return _Missing(
        entities=tuple(
            (kind, ident)
            for kind, ident in named
            if ident and not store.has(kind, ident) and evicted.might_hold((kind, ident))
        ),
        series=tuple(
            key
            for key in series_keys(user, group)
            if key[0] != "request" and not counters.has(key) and evicted.might_hold(key)
        ),
    )


def _read(
    con: Connection,
    missing: _Missing,
    user: str | None,
    group: str | None,
    keep: timedelta,
) -> tuple[list[Any], list[list[Any]]]:
    from waystone_cli.ledger.counters import counter_rows, counters_since
    from waystone_cli.ledger.entities import load_entity

    entities = [load_entity(con, kind, ident) for kind, ident in missing.entities]
    if not missing.series:
        return entities, []
    now = datetime.now(UTC)
    since = counters_since(now, keep=keep)
    # A member's rows are among its user's: a group's rows are read only when its own
    # series is missing (a large group has many).
    kinds = {kind for kind, _ in missing.series}
    rows = counter_rows(
        con,
        since,
        user_id=user if kinds & {"user", "member"} else None,
        group_id=group if "group" in kinds else None,
        now=now,
        fine=keep,
    )
    return entities, rows


async def evict_idle(
    app: web.Application,
    *,
    keep_entities: int = KEEP_ENTITIES,
    keep_series: int = KEEP_SERIES,
    idle_minutes: int = IDLE_MINUTES,
) -> int:
    """One sweep (module docstring); returns how many entities and series it dropped."""
    writer, store, counters = app[LEDGER], app[ENTITIES], app[COUNTERS]
    if not writer.healthy:
        return 0
    entities = _settled(store.evictable(keep_entities), counters)
    series = []
    if rebuilds_exactly(app[CONFIG].current.config, counters.keep):
        idle_before = int(time.time() // 60) - idle_minutes
        series = counters.evictable(keep=keep_series, idle_before=idle_before)
    if not entities and not series:
        return 0
    try:
        await asyncio.wait_for(writer.flush(), FLUSH_TIMEOUT_S)
    except TimeoutError:
        return 0
    evictions = app[EVICTIONS]
    async with evictions.lock:  # no recall is between its read and its restore
        dropped = [*store.evict(_settled(entities, counters)), *counters.evict(series)]
        for key in dropped:
            evictions.evicted.add(key)
    return len(dropped)


def trim_loaded(app: web.Application) -> int:
    """At start, before any request: all that was loaded is in the ledger, so what is past
    the bounds (or idle) leaves at once rather than at the first sweep."""
    store, counters, evicted = app[ENTITIES], app[COUNTERS], app[EVICTIONS].evicted
    dropped: list[tuple[str, str]] = [*store.evict(store.evictable(KEEP_ENTITIES))]
    if rebuilds_exactly(app[CONFIG].current.config, counters.keep):
        idle_before = int(time.time() // 60) - IDLE_MINUTES
        dropped += counters.evict(counters.evictable(keep=KEEP_SERIES, idle_before=idle_before))
    for key in dropped:
        evicted.add(key)
    return len(dropped)


def _settled(entities: list[EntityEvictable], counters: UsageCounters) -> list[EntityEvictable]:
    """The entities no request in flight names: a request's row, which carries what it
    said about its entities, is submitted when it settles (or at once when refused)."""
    return [e for e in entities if not counters.reserved((e.kind, e.id))]


def rebuilds_exactly(config: Config, keep: timedelta) -> bool:
    """Whether the ledger keeps every row the counters count (no shorter ``retain``)."""
    return not any(
        rule.action == "retain" and rule.days is not None and timedelta(days=rule.days) < keep
        for rule in config.rules.values()
    )


async def _sweep_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        dropped = await evict_idle(app)
        if dropped:
            log.debug("evicted %d idle entities and usage series", dropped)


async def evicting(app: web.Application) -> AsyncIterator[None]:
    """The sweep, for the app's ``cleanup_ctx`` (after the ledger's)."""
    task = asyncio.create_task(_sweep_forever(app), name="waystone-evict-idle")
    try:
        yield
    finally:
        await stop_tasks([task])
