"""The counter store's lifetime: chosen at start, connected, swept, recovered, closed.

Without ``[cluster] redis_url`` the store is the in-memory ``MemoryStore`` and nothing
runs.  With it: the link connects (a Redis that is down at start is retried in the
background, as in any later outage), the counters are rebuilt if Redis lacks this
instance's ledger, a sweep releases expired reservations every second, and each time
the link comes back the store recovers: replays the settles Redis missed (or rebuilds)
and leaves the local fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiohttp import web

from daemon.counters.link import TIMEOUT_S, Link, RedisDown
from daemon.counters.metrics import CountersCollector
from daemon.counters.rebuild import ledger_counter_rows, ledger_identity, rebuild
from daemon.counters.redis_store import RedisStore
from daemon.counters.store import CounterStore, MemoryStore
from daemon.state import CONFIG, COUNTERS, OBSERVER, STORE
from waystone_cli.core.cluster import instance_name, server_url
from waystone_cli.core.counters import UsageCounters
from waystone_cli.core.policy import longest_window

log = logging.getLogger("waystone.counters")

SWEEP_S = 1.0


async def counters_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].current.config
    url = server_url(config.cluster.redis_url, "cluster.redis_url")
    if url is None:
        app[STORE] = MemoryStore(app[COUNTERS])
        yield
        return
    store = _redis_store(app, url)
    app[STORE] = store
    app[OBSERVER].metrics.registry.register(CountersCollector(store))
    tasks = _Tasks(app, store)
    store.link._on_change = tasks.link_changed
    store.on_lost = tasks.start_rebuild
    await store.link.start()
    if store.link.up:
        await tasks.recover()
    sweeper = asyncio.create_task(tasks.sweep_forever(), name="waystone-counters-sweep")
    try:
        yield
    finally:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await tasks.stop()
        await store.link.close()


def _redis_store(app: web.Application, url: str) -> RedisStore:
    config = app[CONFIG].current.config
    keep = max(longest_window(config), timedelta(days=32))
    keep_s = int(keep.total_seconds())

    async def reload_local() -> UsageCounters:
        counters = UsageCounters(tz=config.server.timezone, keep=keep)
        counters.load(await ledger_counter_rows(app, keep_s))
        return counters

    return RedisStore(
        Link(url),
        identity=ledger_identity(app),
        instance=instance_name(config),
        memory=app[COUNTERS],
        tz=config.server.timezone,
        keep_s=keep_s,
        expiry_s=config.cluster.reservation_expiry_s,
        on_error=config.cluster.on_redis_error,
        reload_local=reload_local,
    )


class _Tasks:
    """The store's background work: one rebuild or recovery at a time, and the sweep."""

    def __init__(self, app: web.Application, store: RedisStore) -> None:
        self.app = app
        self.store = store
        self.recovery: asyncio.Task[None] | None = None
        self.localizing: asyncio.Task[None] | None = None

    def link_changed(self, up: bool) -> None:
        if up:
            self.start_rebuild()
        elif self.store.on_error == "local":
            self.store.go_local()
            self._reload_local()

    def start_rebuild(self) -> None:
        if self.recovery is None or self.recovery.done():
            self.recovery = asyncio.get_running_loop().create_task(
                self.recover(), name="waystone-counters-recover"
            )

    async def recover(self) -> None:
        """Bring Redis up to date with this instance, then serve from it again."""
        store = self.store
        store.rebuilding = True
        try:
            await rebuild(store, lambda: ledger_counter_rows(self.app, store.keep_s))
        except (RedisDown, OSError) as err:
            log.warning("redis: rebuilding the counters failed: %s", err)
            return
        finally:
            store.rebuilding = False
        if store.local:
            store.local = False
            try:  # settles that came in while the first replay was on its way
                await store.send_replay()
            except RedisDown:
                return  # kept; the next recovery sends them
            log.warning("redis: back; counting in Redis again")

    def _reload_local(self) -> None:
        if self.localizing is not None and not self.localizing.done():
            return

        async def reload() -> None:
            counters = await self.store.reload_local()
            # The store's own: app[COUNTERS] keeps the counters loaded at start.
            self.store.memory.counters = counters

        self.localizing = asyncio.get_running_loop().create_task(
            reload(), name="waystone-counters-local"
        )

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            link = self.store.link
            if link.stalled():
                link.drop(f"no answer within {TIMEOUT_S:g} s")
                continue
            try:
                released = await asyncio.wait_for(self.store.sweep(), TIMEOUT_S)
            except RedisDown:
                continue
            except TimeoutError:
                link.drop(f"no answer within {TIMEOUT_S:g} s")
                continue
            if released:
                log.info("redis: %d expired reservations released", released)

    async def stop(self) -> None:
        for task in (self.recovery, self.localizing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


def store_state(store: CounterStore) -> dict[str, Any]:
    """The counters' part of ``/readyz``."""
    if not isinstance(store, RedisStore):
        return {"ok": True, "backend": "memory"}
    link = store.link
    return {
        "ok": store.state in ("redis", "local"),
        "backend": "redis",
        "state": store.state,
        "redis_reachable": link.up,
        "last_error": link.last_error,
        "on_redis_error": store.on_error,
        "rebuilds": store.rebuilds,
        "replay_queue": len(store.replay.entries),
    }
