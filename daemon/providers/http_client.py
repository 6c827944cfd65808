"""A small HTTP/1.1 client for calling providers: keep-alive pools, parsing by httptools.

Why not aiohttp's ``ClientSession``, which the daemon used before: a POST and the read of
its answer cost several times more CPU in ``ClientSession`` than here, kernel time
included, and a gateway pinned to one core spent a large share of each request in it.  The parsing, the part that must be exact, is ``httptools`` (the
llhttp parser of Node.js, kept by the uvloop authors); this module only frames requests
and keeps connections.

What it does:

- HTTP/1.1 over TCP, or TLS for ``https`` URLs (the system's CA store, host name
  checked).  Idle keep-alive connections are pooled per scheme, host and port and reused
  last-in first-out; one idle for more than ``keepalive_s`` (15 s, as aiohttp) or closed
  by its server is dropped, never reused.
- A request body is sent whole, with ``Content-Length``.  An answer is read by its
  ``Content-Length``, chunked, or until the server closes the connection; ``gzip`` and
  ``deflate`` answers are decoded (``Accept-Encoding`` asks for them, as aiohttp did).
- ``max_bytes`` bounds an answer's body as decoded (``http_body``): past it the answer
  fails with ``AnswerTooLarge``, after what fitted was delivered.
- ``connect_s`` bounds opening a connection (TCP and TLS); ``read_s`` bounds each wait for
  more of the answer, so a long stream that keeps sending never times out (aiohttp's
  ``sock_read``); ``chunks()`` may give the body's waits a bound of their own.  While nothing is waiting, nothing times out: a slow reader is not the
  server's fault.
- Interim ``1xx`` answers are skipped; an answer to ``HEAD`` ends with its head.  Bytes
  after the end of an answer, a corrupt or truncated gzip stream, or an encoding that was
  not asked for fail the answer (and the connection is not reused).
- Back-pressure: when the reader falls more than ``HIGH_WATER`` bytes behind, the socket
  stops being read until it catches up.
- No request is retried here, as aiohttp does not retry a POST: a connection that fails
  before its answer is an error for the caller (a ``fallback`` rule may retry).
- Errors: ``TimeoutError``; ``ConnectionError`` (refused, reset, closed before the answer
  was complete, a malformed answer); other ``OSError`` (name resolution, TLS).

Not supported, because provider APIs do not need them: proxies, redirects, HTTP/2,
``Expect: 100-continue``, cookies.  ``tests/unit/test_http_client.py`` runs every case on
asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import cast

import httptools

from daemon.providers.http_body import BodyDecoder
from daemon.providers.http_framing import Target, request_head, target

HIGH_WATER = 256 * 1024  # buffered answer bytes that pause reading the socket
LOW_WATER = 64 * 1024  # ... and resume it
KEEPALIVE_S = 15.0
_TRANSFER = "transfer-encoding"


class HttpClient:
    """Pools of keep-alive connections; ``request()`` sends and returns on the answer's head."""

    def __init__(
        self, keepalive_s: float = KEEPALIVE_S, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.keepalive_s = keepalive_s
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._ssl = ssl_context  # the system's CA store unless given

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        connect_s: float = 10.0,
        read_s: float = 600.0,
        max_bytes: int | None = None,
    ) -> Response:
        where = target(url)
        head = request_head(method, where, headers, len(body) if body or method != "GET" else None)
        conn = self._reuse(where) or await self._connect(where, connect_s)
        conn.send(head, body, read_s, max_bytes)
        try:
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait()
        except BaseException:
            conn.close()  # a cancelled or failed call leaves nothing open upstream
            raise
        if method == "HEAD" and not conn.done:
            conn.end_at_head()
        return Response(conn, self)

    def release(self, conn: _Connection) -> None:
        """Back to the pool if the answer was read whole and the server keeps it open."""
        if conn.reusable():
            conn.idle_since = conn.loop.time()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    @property
    def idle(self) -> int:
        """Idle connections kept open."""
        return sum(len(conns) for conns in self._idle.values())

    def _reuse(self, where: Target) -> _Connection | None:
        conns = self._idle.get(where.key)
        while conns:
            conn = conns.pop()
            fresh = conn.loop.time() - conn.idle_since < self.keepalive_s
            if fresh and not conn.closed and not conn.closing():
                return conn
            conn.close()
        return None

    async def _connect(self, where: Target, connect_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if where.tls else None
        async with asyncio.timeout(connect_s):
            _, conn = await loop.create_connection(
                lambda: _Connection(loop, where.key),
                where.host,
                where.port,
                ssl=context,
                server_hostname=where.host if context is not None else None,
            )
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


class Response:
    """An answer whose head has arrived: ``status``, ``headers`` (lower-case names) and
    the body, read whole or as chunks.  ``release()`` must be called (more than once is
    fine): it returns the connection to its pool or closes it."""

    __slots__ = ("status", "headers", "_conn", "_client")

    def __init__(self, conn: _Connection, client: HttpClient) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn: _Connection | None = conn
        self._client = client

    async def read(self) -> bytes:
        conn = self._live()
        parts = []
        while not conn.done:
            if conn.error is not None:
                raise conn.error
            parts.append(conn.take())  # resumes a socket paused at HIGH_WATER
            await conn.wait()
        parts.append(conn.take())
        return b"".join(parts)

    async def chunks(self, read_s: float | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives: everything received so far, in one piece per wait.
        What arrived before an error is delivered before the error is raised.  ``read_s``
        replaces the request's for each wait from here on (a stream's idle time)."""
        conn = self._live()
        if read_s is not None:
            conn.set_read_s(read_s)
        while True:
            data = conn.take()
            if data:
                yield data
            elif conn.done:
                return
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait()

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._client.release(conn)

    def _live(self) -> _Connection:
        if self._conn is None:
            raise ConnectionError("the answer was already released")
        return self._conn


class _Connection(asyncio.Protocol):
    """One connection and the answer being read on it (httptools calls the ``on_*``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: tuple[bool, str, int]) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False  # a request is in flight
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._begin(0.0, None)

    def _begin(self, read_s: float, max_bytes: int | None) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._decoder: BodyDecoder | None = None
        self._until_eof = False
        self._interim = False
        self._waiter: asyncio.Future[None] | None = None
        self._read_s = read_s
        self._since = 0.0  # when the current wait began
        self._timer: asyncio.TimerHandle | None = None
        self._max_bytes = max_bytes

    # --- the caller's side --------------------------------------------------------

    def send(self, head: bytes, body: bytes, read_s: float, max_bytes: int | None) -> None:
        assert self.transport is not None
        self._begin(read_s, max_bytes)
        self.busy = True
        # Written whole: the transport buffers what the socket cannot take yet (asyncio's
        # default pause_writing, which does nothing, is kept).
        self.transport.writelines((head, body) if body else (head,))

    async def wait(self) -> None:
        """Until more of the answer, its end or an error arrives (or ``read_s`` passes)."""
        waiter = self._waiter = self.loop.create_future()
        self._since = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_at(self._since + self._read_s, self._read_timer)
        try:
            await waiter
        finally:
            self._waiter = None

    def set_read_s(self, read_s: float) -> None:
        self._read_s = read_s
        self._stop_timer()  # the next wait times itself by the new bound

    def take(self) -> bytes:
        """The body bytes received and not yet taken."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        self._body = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def end_at_head(self) -> None:
        """A HEAD answer has no body, whatever its Content-Length says; the parser does not
        know that, so the connection is not reused."""
        self._complete()
        self.keep_alive = False

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.closed and not self._body

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.done:  # bytes nobody asked for: not to be trusted
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            self._fail(err.__context__ or ConnectionError(f"bad answer: {err}"))
        except httptools.HttpParserError as err:
            self._fail(ConnectionError(f"malformed HTTP answer: {err}"))
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the connection; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.busy and not self.done and self.error is None:
            if self.head_done and self._until_eof:
                self._complete()  # the answer had no length: it ends with the connection
            else:
                self.error = ConnectionError(
                    f"connection closed before the answer was complete{f': {exc}' if exc else ''}"
                )
        self._stop_timer()
        self._wake()

    # --- httptools callbacks --------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise ConnectionError("bytes after the end of the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        headers = self.headers
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim (103 Early Hints): the final answer follows
            self._interim = True
            self.headers = {}
            return
        self.status = status
        self._until_eof = "content-length" not in headers and "chunked" not in headers.get(
            _TRANSFER, ""
        )
        self._decoder = BodyDecoder(headers.get("content-encoding", ""), self._max_bytes)
        self.head_done = True

    def on_body(self, data: bytes) -> None:
        assert self._decoder is not None  # set with the head
        data = self._decoder.feed(data)
        if not data:
            return
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete()

    # --- internals -------------------------------------------------------------------

    def _complete(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            try:
                tail = decoder.end()
            except ConnectionError as err:
                self._fail(err)
                return
            if tail:
                self._body.append(tail)
        self.keep_alive = self._parser.should_keep_alive() and not self._until_eof
        self.done = True
        self.busy = False
        self._stop_timer()

    def _fail(self, err: BaseException) -> None:
        self.error = err
        self.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _read_timer(self) -> None:
        self._timer = None
        if self.done or self.error is not None or self._waiter is None:
            return  # nobody waits: a later wait() sets a new timer
        rest = self._since + self._read_s - self.loop.time()
        if rest > 0:  # the wait began after the timer was set: wait out its own read_s
            self._timer = self.loop.call_later(rest, self._read_timer)
            return
        self._fail(TimeoutError(f"no answer bytes for {self._read_s:g} s"))
        self._wake()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
