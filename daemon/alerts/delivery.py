"""Storing and posting alert events: two background tasks, off every request's path.

- The *storing* task waits for the outbox's wake-up, takes its fresh events and stores
  them in the ledger on the writer's thread (``ledger.alerts.store``).  Only the events
  that were new there are scheduled for delivery: one stored by an earlier run or by
  another instance is that run's to deliver.  A ledger that cannot store them keeps
  them in memory and is tried again after ``retry_s``.
- The *delivering* task posts due events one at a time, oldest due first: the JSON body
  exactly as stored, ``X-Waystone-Signature: sha256=<HMAC>`` when a secret is set, within
  ``[alerts] timeout_s``.  A 2xx answer delivers it; anything else (another status, a
  refused connection, a timeout) is retried after ``retry_s × 2^(attempts-1)``, at most
  ``MAX_RETRY_S``, times a random factor in [0.5, 1) so that many events failing
  together do not come back together.  There is no attempt limit: an event is kept
  until it is delivered (the operator sees it in ``waystone alerts list``).  Each
  attempt is appended to the ledger, in batches (``ATTEMPTS_PER_WRITE``, or whenever
  nothing is due).

At start the undelivered events are reloaded and tried at once, and the dedupe keys of
the windows still current are loaded into the outbox, before the daemon serves.  A
slow receiver holds only the delivering task: requests never wait on it, and events
made meanwhile are stored at once.  Delivery is at least once: an event whose post
succeeded but whose attempt row could not be written (or a post cut by a stop) is
posted again later, with the same ``id``, for the receiver to drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from daemon.alerts.outbox import Outbox
from daemon.maintenance import stop_tasks
from daemon.providers.http_client import HttpClient
from daemon.state import ALERTS, CONFIG, HTTP, LEDGER, OBSERVER, SETTINGS
from waystone_cli.core.alerts import SIGNATURE_HEADER, signature
from waystone_cli.core.policy import longest_window
from waystone_cli.core.secrets import alerts_secret
from waystone_cli.ledger import alerts as ledger_alerts
from waystone_cli.ledger.alerts import Attempt, Pending

log = logging.getLogger("waystone.alerts")
MAX_RETRY_S = 300.0
# Attempts are appended to the ledger in batches of at most this many, or as soon as no
# event is due: a busy delivery writes one transaction per batch, not one per post.
ATTEMPTS_PER_WRITE = 100
# A receiver's answer is read and dropped; past this it is not worth reading.
MAX_ANSWER_BYTES = 1 << 20


class Delivery:
    def __init__(self, app: web.Application, outbox: Outbox, retry_s: float) -> None:
        self.app = app
        self.outbox = outbox
        self.retry_s = retry_s
        self._due: list[tuple[float, int, Pending]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()
        self._attempts: list[Attempt] = []
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Events stored and not delivered yet, and events not stored yet."""
        return len(self._due) + len(self.outbox.fresh)

    async def load(self) -> None:
        keep = max(longest_window(self.app[CONFIG].current.config).total_seconds(), 32 * 86400)
        since = datetime.fromtimestamp(time.time() - keep, UTC)
        writer = self.app[LEDGER]
        self.outbox.load(
            await writer.run_in_db(lambda con: ledger_alerts.recent_keys(con, since)), keep
        )
        for row in await writer.run_in_db(ledger_alerts.pending):
            self._schedule(row, 0.0)

    async def storing(self) -> None:
        while True:
            await self.outbox.wake.wait()
            self.outbox.wake.clear()
            if not await self.store_fresh():
                await asyncio.sleep(self.retry_s)
                self.outbox.wake.set()

    async def store_fresh(self) -> bool:
        """Store what the outbox holds; False when the ledger refused (kept for later)."""

        events = self.outbox.take()
        if not events:
            return True
        try:
            new = set(
                await self.app[LEDGER].run_in_db(lambda con: ledger_alerts.store(con, events))
            )
        # Whatever the ledger's backend raises: the events wait in memory.
        except Exception as err:
            log.warning("alerts: cannot store %d events yet: %s", len(events), err)
            self.outbox.give_back(events)
            return False
        metrics = self.app[OBSERVER].metrics
        for e in events:
            if e.id in new:
                metrics.alerts.inc((e.type, "queued"))
                self._schedule(Pending(id=e.id, type=e.type, body=e.body, attempts=0), 0.0)
        return True

    async def delivering(self, client: HttpClient) -> None:
        while True:
            wait = self._due[0][0] - time.monotonic() if self._due else None
            if wait is None or wait > 0:
                if self._attempts:  # nothing due: the history catches up, then look again
                    await self.write_attempts()
                    continue
                # No await between the look at the heap and clear(): a schedule() made
                # meanwhile would be lost, and the task would sleep with an event due.
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                continue
            _, _, event = heapq.heappop(self._due)
            await self._attempt(client, event)
            if len(self._attempts) >= ATTEMPTS_PER_WRITE:
                await self.write_attempts()

    async def _attempt(self, client: HttpClient, event: Pending) -> None:
        snapshot = self.app[CONFIG].current
        alerts = snapshot.config.alerts
        attempt = event.attempts + 1
        status, error = None, None
        if alerts.webhook is None:
            error = "no [alerts] webhook is configured"
        else:
            secret = alerts_secret(snapshot.config, os.environ)
            status, error = await post(client, alerts.webhook, event.body, secret, alerts.timeout_s)
        now = datetime.now(UTC)
        metrics = self.app[OBSERVER].metrics
        if error is None:
            metrics.alerts.inc((event.type, "delivered"))
            next_at = None
        else:
            error = snapshot.redactor.text(error)
            self.last_error = error
            metrics.alerts.inc((event.type, "failed"))
            delay = self.backoff(attempt)
            next_at = datetime.fromtimestamp(now.timestamp() + delay, UTC)
            retry = Pending(id=event.id, type=event.type, body=event.body, attempts=attempt)
            self._schedule(retry, delay)
            log.warning("alerts: event %s not delivered (%s); retrying", event.id, error)
        self._attempts.append(
            Attempt(
                alert_id=event.id,
                attempt=attempt,
                at=now,
                status=status,
                error=error,
                next_attempt_at=next_at,
            )
        )

    async def write_attempts(self) -> None:
        """Append the attempts made since the last write, in one transaction."""

        rows, self._attempts = self._attempts, []
        if not rows:
            return
        try:
            await self.app[LEDGER].run_in_db(lambda con: ledger_alerts.record_attempts(con, rows))
        # Whatever the ledger's backend raises: the attempts are only history (an
        # event whose delivery went unrecorded is posted again after a restart).
        except Exception as err:
            log.warning("alerts: cannot record %d delivery attempts: %s", len(rows), err)

    def backoff(self, attempt: int) -> float:
        base: float = min(MAX_RETRY_S, self.retry_s * 2.0 ** min(attempt - 1, 30))
        return base * random.uniform(0.5, 1.0)

    def _schedule(self, event: Pending, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), event))
        self._changed.set()


async def post(
    client: HttpClient, url: str, body: bytes, secret: str | None, timeout_s: float
) -> tuple[int | None, str | None]:
    """Post one event: the receiver's status and None when delivered (2xx), else the
    status (None when it did not answer) and what went wrong.  On the daemon's own HTTP
    client (``daemon.providers.http_client``), whose posts cost a fraction of aiohttp's."""
    headers = {"Content-Type": "application/json", "User-Agent": "waystone-alerts"}
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.request(
                "POST",
                url,
                headers,
                body,
                connect_s=timeout_s,
                read_s=timeout_s,
                max_bytes=MAX_ANSWER_BYTES,
            )
            try:
                await response.read()
            finally:
                response.release()
    except TimeoutError:
        return None, f"no answer within {timeout_s:g} s"
    except (ConnectionError, OSError, ValueError) as err:  # ValueError: a URL it cannot use
        return None, f"{type(err).__name__}: {err}"
    if 200 <= response.status < 300:
        return response.status, None
    return response.status, f"HTTP {response.status}"


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """The outbox and its two tasks; pending events are reloaded before serving."""
    outbox = app[ALERTS]
    delivery = app[DELIVERY] = Delivery(app, outbox, app[SETTINGS].alert_retry_s)
    await delivery.load()
    tasks = [
        asyncio.create_task(delivery.storing(), name="waystone-alerts-store"),
        asyncio.create_task(delivery.delivering(app[HTTP]), name="waystone-alerts-deliver"),
    ]
    try:
        yield
    finally:
        await stop_tasks(tasks)
        await delivery.write_attempts()
        await delivery.store_fresh()  # made while stopping: delivered by the next start


DELIVERY = web.AppKey("alerts_delivery", Delivery)
