"""The daily pruning task: apply ``retain`` rules to the ledger once a day (and at start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from daemon.state import LEDGER

log = logging.getLogger("waystone.maintenance")
DAY_S = 86_400.0


async def _prune_daily(app: web.Application) -> None:
    from waystone_cli.ledger.retention import prune

    while True:
        writer = app[LEDGER]
        await writer.flush()
        result = await writer.run_in_db(
            lambda con: prune(con, now=datetime.now(UTC), dry_run=False)
        )
        log.info("pruned the ledger: %s", result)
        await asyncio.sleep(DAY_S)


async def pruning(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_prune_daily(app), name="waystone-prune")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
