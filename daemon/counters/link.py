"""One connection to Redis that sends the commands of a loop tick in one write.

Each request's admission and settlement is its own atomic script call, but the calls
made during one event-loop tick are written together when the tick ends, and their
replies are matched in order as they arrive (auto-pipelining).  Under load a write
carries many requests' calls, so the round trips per request fall well below one; an
idle gateway sends each call at once.

The connection is an ``asyncio.Protocol`` feeding hiredis's reply parser: no task and
no ``await`` per reply, which is what a request pays for on a Python gateway's one
core.  redis-py (the client the rest of the project uses) parses the URL; its asyncio
``Connection`` and ``Pipeline`` were measured slower here (``docs/performance.md``).
When the connection fails or stops answering, every waiting call fails with
``RedisDown``, ``up`` turns false and the link reconnects in the background, loading
the script again (a restarted Redis has forgotten it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ResponseError

from daemon.counters.script import SCRIPT, SCRIPT_SHA

log = logging.getLogger("waystone.counters")

RECONNECT_S = 0.5
# A Redis that stops answering (not only one that closes the connection) is down too.
TIMEOUT_S = 2.0


class RedisDown(Exception):
    """Redis cannot be reached; the caller falls back as ``on_redis_error`` says."""


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings (arguments are str, int or bytes)."""
    if not any(type(a) is bytes for a in args):
        texts = [str(a) for a in args]
        if all(t.isascii() for t in texts):  # lengths in characters are lengths in bytes
            body = "".join(f"${len(t)}\r\n{t}\r\n" for t in texts)
            return f"*{len(texts)}\r\n{body}".encode()
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self, link: Link) -> None:
        self.link = link
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (the daemon's loop) are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader, waiting = self.reader, self.link._waiting
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            fut = waiting.popleft()[1]
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                if str(reply).startswith("NOSCRIPT"):  # flushed: reconnecting loads it
                    fut.set_exception(RedisDown(str(reply)))
                    asyncio.get_running_loop().call_soon(self.link.drop, str(reply))
                else:
                    fut.set_exception(ResponseError(str(reply)))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link._protocol is self:  # not a connection already given up
            self.link._lost(exc or ConnectionError("closed by Redis"))


class Link:
    """The auto-pipelining connection; ``call`` and ``script`` return futures."""

    def __init__(self, url: str, on_change: Callable[[bool], None] | None = None) -> None:
        self._params = parse_url(url)
        self._on_change = on_change
        self._protocol: _Protocol | None = None
        self._buffer: list[bytes] = []
        self._waiting: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._flush_at: asyncio.Handle | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost_event = asyncio.Event()
        self.up = False
        self.round_trips = 0
        self.commands = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Connect once (failing quietly: the background task keeps trying)."""
        try:
            await self._connect()
        except (OSError, ResponseError, RedisDown, TimeoutError) as err:
            self.last_error = str(err) or type(err).__name__
        self._task = asyncio.create_task(self._run(), name="waystone-redis-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        protocol, self._protocol = self._protocol, None
        self.up = False
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._fail(RedisDown("closing"))

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for this tick's write; its reply (or error) is the future's."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self.up:
            fut.set_exception(RedisDown(self.last_error or "not connected"))
            return fut
        self._send(args, fut, loop)
        return fut

    def script(self, *args: Any) -> asyncio.Future[Any]:
        return self.call("EVALSHA", SCRIPT_SHA, 0, *args)

    def stalled(self) -> bool:
        """Whether the oldest call has waited past the timeout (the sweep asks)."""
        return bool(self._waiting) and time.monotonic() - self._waiting[0][0] > TIMEOUT_S

    def drop(self, why: str) -> None:
        """Treat the connection as lost (Redis stopped answering)."""
        protocol = self._protocol
        if protocol is None:
            return
        self._lost(RedisDown(why))
        if protocol.transport is not None:
            protocol.transport.abort()

    # --- internals ------------------------------------------------------------------

    def _send(self, args: tuple[Any, ...], fut: asyncio.Future[Any], loop: Any) -> None:
        self._buffer.append(pack(args))
        self._waiting.append((time.monotonic(), fut))
        if self._flush_at is None:
            self._flush_at = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        buffer, self._buffer = self._buffer, []
        protocol = self._protocol
        if not buffer or protocol is None or protocol.transport is None:
            return
        protocol.transport.write(b"".join(buffer))
        self.round_trips += 1
        self.commands += len(buffer)

    async def _run(self) -> None:
        while True:
            if self.up:
                await self._lost_event.wait()
                self._lost_event.clear()
                continue
            await asyncio.sleep(RECONNECT_S)
            try:
                await self._connect()
            except (OSError, ResponseError, RedisDown, TimeoutError) as err:
                self.last_error = str(err) or type(err).__name__

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        p = self._params
        protocol = _Protocol(self)
        if "path" in p:
            connect = loop.create_unix_connection(lambda: protocol, p["path"])
        else:
            connect = loop.create_connection(
                lambda: protocol, p.get("host", "localhost"), p.get("port", 6379)
            )
        await asyncio.wait_for(connect, TIMEOUT_S)
        self._protocol = protocol
        setup: list[tuple[Any, ...]] = []
        if p.get("password"):
            user = p.get("username")
            setup.append(("AUTH", user, p["password"]) if user else ("AUTH", p["password"]))
        if p.get("db"):
            setup.append(("SELECT", p["db"]))
        setup.append(("SCRIPT", "LOAD", SCRIPT))
        replies = []
        for args in setup:
            fut = loop.create_future()
            self._send(args, fut, loop)
            replies.append(fut)
        try:
            results = await asyncio.wait_for(asyncio.gather(*replies), TIMEOUT_S)
        except BaseException:
            self._protocol, self._buffer = None, []
            if protocol.transport is not None:
                protocol.transport.abort()
            self._fail(RedisDown("connecting failed"))
            raise
        sha = results[-1]
        assert (sha.decode() if isinstance(sha, bytes) else sha) == SCRIPT_SHA
        self.up, self.last_error = True, None
        log.info("redis: connected")
        if self._on_change is not None:
            self._on_change(True)

    def _lost(self, err: BaseException) -> None:
        self._protocol = None
        self._buffer = []
        was_up, self.up = self.up, False
        self.last_error = str(err) or type(err).__name__
        self._fail(RedisDown(self.last_error))
        self._lost_event.set()
        if was_up:
            log.warning("redis: connection lost: %s", self.last_error)
            if self._on_change is not None:
                self._on_change(False)

    def _fail(self, err: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        for _, fut in waiting:
            if not fut.done():
                fut.set_exception(err)
