"""The instance's heartbeat: its row in the ledger's ``instances`` table, every few seconds.

``waystone cluster status`` reads those rows (``ledger.instances``).  The beat runs on
the ledger writer's thread (``run_in_db``), serialized with the batch inserts and never
on a request's path; a beat that fails (the ledger down) is logged once per outage and
tried again at the next one.  The last beat, at shutdown, stamps the final
``last_seen``.

Requests in the last minute come from the metrics' running total of finished requests,
sampled at each beat (``MinuteCount``): no counter of its own on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from daemon.maintenance import stop_tasks
from daemon.state import CONFIG, LEDGER, LISTEN_HOST, OBSERVER, SETTINGS
from waystone_cli.core.cluster import instance_name
from waystone_cli.ledger.instances import Heartbeat, beat

log = logging.getLogger("waystone.heartbeat")


class MinuteCount:
    """Requests over the last minute, from samples of a running total.

    The count spans from the newest sample at least ``window_s`` old (or the first one,
    in the first minute) to now: one beat interval more than a minute at most."""

    def __init__(self, window_s: float = 60.0) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, now: float, total: float) -> int:
        samples = self._samples
        samples.append((now, total))
        while len(samples) > 1 and samples[1][0] <= now - self._window_s:
            samples.popleft()
        return int(total - samples[0][1])


def finished_requests(app: web.Application) -> float:
    """Every request finished so far, as the metrics counted them."""
    return sum(app[OBSERVER].metrics.requests.values.values())


class _Beating:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        settings, config = app[SETTINGS], app[CONFIG].current.config
        self.name = instance_name(config)
        port = settings.port if settings.port is not None else config.server.port
        self.url = f"http://{app[LISTEN_HOST]}:{port}/v1"
        self.started_at = _utc_now()
        self.minute = MinuteCount()
        self.failing = False

    async def once(self) -> None:
        self.app[OBSERVER].flush()  # the requests finished so far are counted
        count = self.minute.sample(time.monotonic(), finished_requests(self.app))
        heartbeat = Heartbeat(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            url=self.url,
            started_at=self.started_at,
            last_seen=_utc_now(),
            requests_last_minute=count,
        )
        try:
            await self.app[LEDGER].run_in_db(lambda con: beat(con, heartbeat))
        # Whatever the ledger's backend raises: a missed beat never stops the serving.
        except Exception as err:
            if not self.failing:
                log.warning("heartbeat: cannot write this instance's row: %s", err)
            self.failing = True
        else:
            if self.failing:
                log.info("heartbeat: this instance's row is written again")
            self.failing = False

    async def every(self, interval_s: float) -> None:
        while True:
            await self.once()
            await asyncio.sleep(interval_s)


async def heartbeat(app: web.Application) -> AsyncIterator[None]:
    beating = _Beating(app)
    task = asyncio.create_task(
        beating.every(app[SETTINGS].heartbeat_interval_s), name="waystone-heartbeat"
    )
    try:
        yield
    finally:
        await stop_tasks([task])
        await beating.once()


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
