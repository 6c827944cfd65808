"""Background upkeep: daily pruning (``retain`` rules) and expiring stale reservations.

Pruning runs at start and then once a day.  A reservation is settled by its request's
``finally``, so one that outlives ``RESERVATION_MAX_AGE_S`` belongs to a request that
died without settling; expiring it gives its budget back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

from aiohttp import web

from daemon.state import COUNTERS, LEDGER

log = logging.getLogger("waystone.maintenance")
DAY_S = 86_400.0
EXPIRE_EVERY_S = 60.0
RESERVATION_MAX_AGE_S = 900.0


async def _prune_daily(app: web.Application) -> None:
    from waystone_cli.ledger.retention import prune

    while True:
        writer = app[LEDGER]
        await writer.flush()
        result = await writer.run_in_db(
            lambda con: prune(con, now=datetime.now(UTC), dry_run=False)
        )
        if result.get("requests"):
            log.info("pruned the ledger: %s", result)
        await asyncio.sleep(DAY_S)


async def _expire_reservations(app: web.Application) -> None:
    while True:
        await asyncio.sleep(EXPIRE_EVERY_S)
        expired = app[COUNTERS].expire(datetime.now(UTC), max_age_s=RESERVATION_MAX_AGE_S)
        if expired:
            log.warning("expired %d reservations of requests that never settled", expired)


async def pruning(app: web.Application) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(_prune_daily(app), name="waystone-prune"),
        asyncio.create_task(_expire_reservations(app), name="waystone-expire-reservations"),
    ]
    try:
        yield
    finally:
        await stop_tasks(tasks)


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel background tasks, then wait until each has stopped."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
