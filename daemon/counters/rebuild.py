"""Rebuilding the Redis counters from the ledger, one instance at a time.

Redis holds no counters on its first start and after a restart or a flush: the set
``ws:ledgers`` then lacks this instance's ledger (``ledger_identity``).  The first
script call that notices starts a rebuild: take the lock ``ws:lock`` (a lease, so a
crashed rebuilder does not hold it forever), flush this instance's ledger writer, read
its rows with ``ledger_counter_rows`` (the same ``counter_rows`` the daemon loads at
start), add them to Redis in batches, record the ledger in ``ws:ledgers`` and release
the lock.  An instance that finds the lock taken waits and checks again: on a shared
ledger the other instance's load covers it; on per-instance ledgers it then loads its
own rows.

Meanwhile requests that a limit applies to are refused with 503 ``cluster_unavailable``
(and a Retry-After): a rebuild takes a moment, and an answer from half-loaded counters
could let a spent budget through.  Requests no limit applies to are served, and their
usage is replayed once the load is in (settles numbered after the writer's flush; the
earlier ones are in the rows read).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from daemon.counters.redis_store import RedisStore
from daemon.counters.view import member_key
from daemon.state import CONFIG, LEDGER, SETTINGS
from waystone_cli.core.cluster import REBUILD_KEY, server_url
from waystone_cli.core.counters import series_keys
from waystone_cli.ledger.counters import counter_rows, counters_since
from waystone_cli.ledger.postgres import hide_password

log = logging.getLogger("waystone.counters")

LEASE_MS = 30_000
WAIT_S = 0.2
ROWS_PER_CALL = 500


def ledger_identity(app: web.Application) -> str:
    """The ledger this instance's rows are in, as ``ws:ledgers`` names it.

    A Postgres ledger (``[ledger] url``): its URL without the password, the same for
    every instance of the config, so that one load serves them all.  Per-instance
    DuckDB files: the host and the file's path."""
    url = server_url(app[CONFIG].current.config.ledger.url, "ledger.url")
    if url is not None:
        return f"postgres:{hide_password(url)}"
    return f"duckdb:{os.uname().nodename}:{app[SETTINGS].ledger_path.resolve()}"


async def ledger_counter_rows(app: web.Application, keep_s: int) -> list[list[Any]]:
    """The ledger's counter rows (``ledger.counters.counter_rows``), after a flush.

    The one place the rebuild reads the ledger: point it at the Postgres ledger there."""
    writer = app[LEDGER]
    await writer.flush()
    since = counters_since(keep=timedelta(seconds=keep_s))
    return await writer.run_in_db(lambda con: counter_rows(con, since))


def _row_args(rows: Sequence[Sequence[Any]]) -> list[Any]:
    args: list[Any] = []
    for user_id, group_id, minute, requests, tokens_in, tokens_out, units in rows:
        for kind, ident in series_keys(user_id, group_id):
            if kind == "member":
                group, _, user = ident.partition("\x1f")
                key = member_key(user, group)
            else:
                key = f"{kind[0]}:{ident}"
            args += (key, int(minute), int(units or 0), int(tokens_in), int(tokens_out))
            args.append(int(requests))
    return args


async def rebuild(store: RedisStore, read_rows: Callable[[], Awaitable[list[list[Any]]]]) -> None:
    """Load this instance's ledger into Redis unless it is there (see the module)."""
    link = store.link
    owner = f"{store.instance}:{os.getpid()}"
    while True:
        if await link.call("SISMEMBER", "ws:ledgers", store.identity):
            gen = _text(await link.call("GET", "ws:gen"))
            if store.gen is not None and gen != store.gen:
                store.replay.take()  # loaded anew from a ledger that holds them
            store.gen, store.loaded = gen, True
            await store.send_replay()
            return
        if await link.call("SET", "ws:lock", owner, "NX", "PX", LEASE_MS):
            break
        await asyncio.sleep(WAIT_S)
    try:
        await _record(
            link, state="building", instance=store.instance, started_at=_now(), finished_at=""
        )
        seq = store.seq
        rows = await read_rows()
        args = _row_args(rows)
        step = ROWS_PER_CALL * 6
        for i in range(0, len(args), step):
            await link.script("load", store.keep_s, *args[i : i + step])
            await link.call("PEXPIRE", "ws:lock", LEASE_MS)
        gen = await link.script("loaded", store.identity, os.urandom(8).hex())
        store.gen = _text(gen)
        store.loaded = True
        store.rebuilds += 1
        await _record(link, state="done", finished_at=_now())
        replayed = await store.send_replay(after=seq)
        log.info(
            "redis: counters rebuilt from %d ledger rows (%d settles replayed)",
            len(rows),
            replayed,
        )
    finally:
        await link.script("unlock", owner)


async def _record(link: Any, **fields: str) -> None:
    """What ``waystone cluster status`` shows of the rebuild (``REBUILD_KEY``)."""
    await link.call("HSET", REBUILD_KEY, *(x for item in fields.items() for x in item))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
