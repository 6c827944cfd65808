"""One connection to Redis that coalesces the commands of a loop tick into one round trip.

Each request's admission and settlement is its own atomic script call, but requests
that arrive while a batch is on the wire share the next write: the commands queued
meanwhile go out together and their replies are read in order (auto-pipelining).
Under load a batch carries many requests' calls, so the round trips per request fall
below one; an idle gateway sends each call at once.

The connection is redis-py's asyncio ``Connection`` with the hiredis parser; the
batching is done here because redis-py's ``Pipeline`` object costs more per command
than the script call it carries.  When the connection fails, every queued and
in-flight call fails with ``RedisDown``, ``up`` turns false and the link reconnects
in the background (loading the script again: a restarted Redis has forgotten it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("waystone.counters")

SCRIPT = (Path(__file__).parent / "counters.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
RECONNECT_S = 0.5
# A Redis that stops answering (not only one that closes the connection) is down too.
SOCKET_TIMEOUT_S = 2.0


class RedisDown(Exception):
    """Redis cannot be reached; the caller falls back as ``on_redis_error`` says."""


class Link:
    """The auto-pipelining connection; ``call`` and ``script`` return futures."""

    def __init__(self, url: str, on_change: Callable[[bool], None] | None = None) -> None:
        pool = ConnectionPool.from_url(url)
        kwargs = dict(pool.connection_kwargs)
        kwargs.setdefault("socket_timeout", SOCKET_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", SOCKET_TIMEOUT_S)
        self._conn: AbstractConnection = pool.connection_class(**kwargs)
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_change = on_change
        self.up = False
        self.round_trips = 0
        self.commands = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Connect once (failing quietly: the background task keeps trying)."""
        try:
            await self._connect()
        except (RedisError, OSError) as err:
            await self._down(err)
        self._task = asyncio.create_task(self._run(), name="waystone-redis-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail(self._take(), RedisDown("closing"))
        await self._conn.disconnect()

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for the next batch; its reply (or error) is the future's."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.up:
            fut.set_exception(RedisDown(self.last_error or "not connected"))
            return fut
        self._queue.append((args, fut))
        self._wake.set()
        return fut

    def script(self, *args: Any) -> asyncio.Future[Any]:
        return self.call("EVALSHA", SCRIPT_SHA, 0, *args)

    # --- the batching loop ----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self.up:
                await asyncio.sleep(RECONNECT_S)
                try:
                    await self._connect()
                except (RedisError, OSError) as err:
                    self.last_error = str(err)
                    continue
            await self._wake.wait()
            self._wake.clear()
            batch = self._take()
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        conn = self._conn
        try:
            await conn.send_packed_command(conn.pack_commands([a for a, _ in batch]), False)
            self.round_trips += 1
            self.commands += len(batch)
            for _, fut in batch:
                try:
                    reply = await conn.read_response()
                except ResponseError as err:
                    if not fut.done():
                        fut.set_exception(err)
                    if "NOSCRIPT" in str(err):
                        raise RedisDown("the script was flushed") from err
                    continue
                if not fut.done():
                    fut.set_result(reply)
        except (RedisError, OSError, RedisDown) as err:
            await self._down(err)
            self._fail(batch + self._take(), RedisDown(str(err)))

    async def _connect(self) -> None:
        await self._conn.connect()  # type: ignore[no-untyped-call]
        await self._conn.send_command("SCRIPT", "LOAD", SCRIPT)
        sha = await self._conn.read_response()
        assert (sha.decode() if isinstance(sha, bytes) else sha) == SCRIPT_SHA
        self.up, self.last_error = True, None
        log.info("redis: connected")
        if self._on_change is not None:
            self._on_change(True)

    async def _down(self, err: BaseException) -> None:
        was_up, self.up = self.up, False
        self.last_error = str(err) or type(err).__name__
        if was_up:
            log.warning("redis: connection lost: %s", self.last_error)
            if self._on_change is not None:
                self._on_change(False)
        # The next connect() starts from a fresh socket.
        await self._conn.disconnect(nowait=True)

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[Any]]]:
        batch, self._queue = self._queue, []
        return batch

    @staticmethod
    def _fail(batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]], err: Exception) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(err)
