"""daemon/providers/http_client.py against real loopback servers, on asyncio's own loop and on uvloop.

Each server is a few lines of ``asyncio.start_server``: it reads what the client sends,
keeps it, and writes back exact bytes, so a test controls the framing byte for byte and
can assert what reached the server.
"""

from __future__ import annotations

import asyncio
import gzip
import re
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
import uvloop

from daemon.providers.http_body import AnswerTooLarge
from daemon.providers.http_client import HIGH_WATER, HttpClient

# The replacement for overriding ``event_loop_policy``, the ``pytest_asyncio_loop_factories``
# hook, is only found in a conftest.py; this file keeps its loops to itself.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding the .event_loop_policy. fixture:pytest.PytestDeprecationWarning"
)


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test runs twice: on asyncio's own loop, and on uvloop as the daemon does."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


# --- the servers ------------------------------------------------------------------------


class Peer:
    """The server's end of one connection: the requests it received, and whether the
    client has closed it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []
        self.client_closed = asyncio.Event()

    async def request(self) -> bytes | None:
        """The next request, head and body, or None once the client has closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            body = await self.reader.readexactly(int(length[1])) if length else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            self.client_closed.set()
            return None
        self.requests.append(head + body)
        return head + body


Handler = Callable[[Peer], Awaitable[None]]


class Upstream:
    """A server on 127.0.0.1 running ``handle`` for each connection; ``peers`` in order."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.peers: list[Peer] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for peer in self.peers:
            peer.writer.close()
        await self._server.wait_closed()

    def url(self, path: str = "/", scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        self.peers.append(peer)
        try:
            await self.handle(peer)
        except (asyncio.CancelledError, ConnectionError):
            # The loop's teardown cancels handlers still waiting, and Python 3.11's
            # start_server logs a cancelled handler as an error; a reset is the client's.
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    """Starts upstreams for one test (``await serve(handle, tls=None)``), stops them after."""
    upstreams: list[Upstream] = []

    async def start(handle: Handler, tls: ssl.SSLContext | None = None) -> Upstream:
        upstream = Upstream(handle)
        await upstream.start(tls)
        upstreams.append(upstream)
        return upstream

    yield start
    for upstream in upstreams:
        await upstream.stop()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    client.close()


async def silent(peer: Peer) -> None:
    """Reads requests and never answers, until the client closes."""
    while await peer.request() is not None:
        pass


def answering(answer: bytes) -> Handler:
    """Answers every request on a connection with ``answer``, until the client closes."""

    async def handle(peer: Peer) -> None:
        while await peer.request() is not None:
            peer.writer.write(answer)

    return handle


def answer(body: bytes, *headers: str) -> bytes:
    """A 200 answer with a Content-Length, after ``headers`` ("Name: value")."""
    head = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def cut_short(peer: Peer) -> None:
    """Promises 100 bytes, sends 10 and hangs up."""
    await peer.request()
    peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")


async def get(client: HttpClient, url: str, read_s: float = 600.0) -> bytes:
    r = await client.request("GET", url, {}, read_s=read_s)
    try:
        return await r.read()
    finally:
        r.release()


async def until(condition: Callable[[], object], within: float = 2.0) -> None:
    """Waits until ``condition()`` is true: a test fails rather than hangs."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


async def closed_by_client(peer: Peer) -> None:
    await asyncio.wait_for(peer.client_closed.wait(), 2)


# --- the loops --------------------------------------------------------------------------


async def test_each_test_runs_on_the_loop_of_its_parameter(
    event_loop_policy: asyncio.AbstractEventLoopPolicy,
) -> None:
    on_uvloop = isinstance(asyncio.get_running_loop(), uvloop.Loop)
    assert on_uvloop == isinstance(event_loop_policy, uvloop.EventLoopPolicy)


# --- requests ---------------------------------------------------------------------------


async def test_post_sends_host_with_port_length_encodings_and_the_given_headers_once(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"")))
    headers = {
        "Authorization": "Bearer sk-1",
        "Content-Type": "application/json",
        "Host": "elsewhere.example",
        "content-length": "999",
    }
    r = await client.request("POST", upstream.url("/v1/x?a=1"), headers, b'{"a": 1}')
    r.release()
    assert upstream.peers[0].requests == [
        b"POST /v1/x?a=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{upstream.port}\r\n".encode()
        + b"Content-Length: 8\r\n"
        b"Accept-Encoding: gzip, deflate\r\n"
        b"Authorization: Bearer sk-1\r\n"
        b"Content-Type: application/json\r\n"
        b"\r\n"
        b'{"a": 1}'
    ]


async def test_get_without_a_body_sends_no_content_length(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"[]")))
    assert await get(client, upstream.url("/v1/models")) == b"[]"
    assert upstream.peers[0].requests == [
        b"GET /v1/models HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{upstream.port}\r\n".encode()
        + b"Accept-Encoding: gzip, deflate\r\n\r\n"
    ]


@pytest.mark.parametrize(
    "headers", [{"X-Note": "a\r\nInjected: 1"}, {"X-Note\nInjected": "1"}], ids=["value", "name"]
)
async def test_header_with_a_line_break_is_refused_before_connecting(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient, headers: dict[str, str]
) -> None:
    upstream = await serve(silent)
    with pytest.raises(ValueError, match="line break"):
        await client.request("POST", upstream.url(), headers, b"{}")
    await asyncio.sleep(0.05)  # time for a connection to arrive, had one been opened
    assert upstream.peers == []


# --- answers ----------------------------------------------------------------------------


async def test_content_length_answer_is_read_and_its_connection_reused(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    body = b'{"ok": true}'
    upstream = await serve(answering(answer(body, "Content-Type: application/json", "X-ID: r1")))
    for _ in range(2):
        r = await client.request("POST", upstream.url(), {}, b"{}")
        assert r.status == 200
        assert r.headers == {
            "content-type": "application/json",
            "x-id": "r1",
            "content-length": "12",
        }
        assert await r.read() == body
        r.release()
        assert client.idle == 1
    assert len(upstream.peers) == 1
    assert len(upstream.peers[0].requests) == 2


async def test_chunked_answer_reaches_the_reader_chunk_by_chunk(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    first_read = asyncio.Event()

    async def stream(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(CHUNKED + chunk(b"data: 1\n\n"))
        await first_read.wait()
        peer.writer.write(chunk(b"data: 2\n\n") + LAST_CHUNK)
        await silent(peer)

    upstream = await serve(stream)
    r = await client.request("POST", upstream.url(), {}, b"{}", read_s=2)
    pieces = []
    async for piece in r.chunks():
        pieces.append(piece)
        first_read.set()  # only now does the server send the second chunk
    r.release()
    assert pieces == [b"data: 1\n\n", b"data: 2\n\n"]
    assert client.idle == 1


async def test_answer_without_a_length_ends_with_the_connection_and_is_not_pooled(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, ")
        await peer.writer.drain()
        peer.writer.write(b"until the end")  # and the server closes

    upstream = await serve(until_close)
    assert await get(client, upstream.url()) == b"all of it, until the end"
    assert client.idle == 0


@pytest.mark.parametrize(
    "encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
async def test_compressed_answer_is_decoded(
    serve: Callable[..., Awaitable[Upstream]],
    client: HttpClient,
    encoding: str,
    compress: Callable[[bytes], bytes],
) -> None:
    text = b'{"choices": []}' * 100
    upstream = await serve(answering(answer(compress(text), f"Content-Encoding: {encoding}")))
    assert await get(client, upstream.url()) == text
    assert client.idle == 1


async def test_gzip_stream_in_chunks_is_decoded_piece_by_piece(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    text = b"".join(b"data: %d\n\n" % i for i in range(500))
    packed = gzip.compress(text)
    pieces = b"".join(map(chunk, split(packed, len(packed) // 3 + 1)))
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    upstream = await serve(answering(head + pieces + LAST_CHUNK))
    r = await client.request("GET", upstream.url(), {})
    assert b"".join([piece async for piece in r.chunks()]) == text
    r.release()


async def test_answer_in_an_encoding_not_asked_for_is_a_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"\x0b\x02\x80abc\x03", "Content-Encoding: br")))
    with pytest.raises(ConnectionError, match="not asked for: br"):
        await get(client, upstream.url())
    assert client.idle == 0


# --- failures ---------------------------------------------------------------------------


async def test_read_of_an_answer_cut_short_raises_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(cut_short)
    with pytest.raises(ConnectionError, match="before the answer was complete"):
        await get(client, upstream.url())
    assert client.idle == 0


async def test_chunks_of_an_answer_cut_short_come_before_the_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(cut_short)
    r = await client.request("GET", upstream.url(), {})
    pieces = []
    with pytest.raises(ConnectionError, match="before the answer was complete"):
        async for piece in r.chunks():
            pieces.append(piece)
    r.release()
    assert pieces == [b"0123456789"]


async def test_server_that_hangs_up_without_answering_is_a_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    async def hang_up(peer: Peer) -> None:
        await peer.request()

    upstream = await serve(hang_up)
    with pytest.raises(ConnectionError):
        await client.request("POST", upstream.url(), {}, b"{}")


async def test_malformed_answer_is_a_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(b"HTTP/1.1 OK\r\nno status code\r\n\r\n"))
    with pytest.raises(ConnectionError, match="malformed"):
        await client.request("GET", upstream.url(), {})
    await closed_by_client(upstream.peers[0])


async def test_silent_server_times_out_after_read_s_and_is_hung_up_on(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(silent)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.request("POST", upstream.url(), {}, b"{}", read_s=0.2)
    took = time.monotonic() - started
    # 1 ms of slack: libuv's timers count whole milliseconds from the loop's cached clock
    assert 0.199 <= took < 1.0
    await closed_by_client(upstream.peers[0])


async def test_port_with_nothing_listening_is_connection_refused(client: HttpClient) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))  # a port taken but not listening: no one else gets it
        port = held.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await client.request("GET", f"http://127.0.0.1:{port}/", {})


async def test_tls_handshake_that_never_ends_times_out_after_connect_s(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(silent)  # plain TCP: it never answers the TLS hello
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.request("GET", upstream.url(scheme="https"), {}, connect_s=0.2)
    assert time.monotonic() - started < 1.0
    await closed_by_client(upstream.peers[0])


async def test_cancelling_a_request_closes_its_connection(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(silent)
    task = asyncio.create_task(client.request("POST", upstream.url(), {}, b"{}"))
    await until(lambda: upstream.peers and upstream.peers[0].requests)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await closed_by_client(upstream.peers[0])
    assert client.idle == 0


# --- the pool ---------------------------------------------------------------------------


async def test_idle_connection_closed_by_the_server_is_replaced(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"ok")))
    r = await client.request("GET", upstream.url(), {})
    await r.read()
    conn = r._conn
    assert conn is not None
    r.release()
    assert client.idle == 1
    upstream.peers[0].writer.close()
    await until(lambda: conn.closed)
    assert await get(client, upstream.url()) == b"ok"
    assert len(upstream.peers) == 2


async def test_bytes_on_an_idle_connection_drop_it(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"ok")))
    r = await client.request("GET", upstream.url(), {})
    await r.read()
    conn = r._conn
    assert conn is not None
    r.release()
    upstream.peers[0].writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
    await until(lambda: conn.closed)
    assert await get(client, upstream.url()) == b"ok"
    assert len(upstream.peers) == 2


async def test_connection_idle_past_keepalive_s_is_replaced(
    serve: Callable[..., Awaitable[Upstream]],
) -> None:
    client = HttpClient(keepalive_s=0.05)
    upstream = await serve(answering(answer(b"ok")))
    assert await get(client, upstream.url()) == b"ok"
    await asyncio.sleep(0.1)
    assert await get(client, upstream.url()) == b"ok"
    assert len(upstream.peers) == 2
    await closed_by_client(upstream.peers[0])
    client.close()


async def test_concurrent_requests_open_a_connection_each_and_close_closes_them(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"ok")))
    url = upstream.url()
    assert await asyncio.gather(get(client, url), get(client, url)) == [b"ok", b"ok"]
    assert (len(upstream.peers), client.idle) == (2, 2)
    client.close()
    assert client.idle == 0
    for peer in upstream.peers:
        await closed_by_client(peer)


async def test_release_twice_is_harmless_and_a_released_answer_cannot_be_read(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"ok")))
    r = await client.request("GET", upstream.url(), {})
    assert await r.read() == b"ok"
    r.release()
    r.release()
    assert client.idle == 1
    with pytest.raises(ConnectionError, match="already released"):
        await r.read()


async def test_release_before_the_body_is_read_closes_the_connection(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    async def half_sent(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await silent(peer)

    upstream = await serve(half_sent)
    r = await client.request("GET", upstream.url(), {})
    r.release()
    assert client.idle == 0
    await closed_by_client(upstream.peers[0])


# --- back-pressure ----------------------------------------------------------------------

BIG = bytes(range(256)) * (8 * 1024)  # 2 MiB whose order shows


def big_answer(framing: str) -> bytes:
    if framing == "content-length":
        return answer(BIG)
    return CHUNKED + b"".join(map(chunk, split(BIG, 65536))) + LAST_CHUNK


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_slow_reader_pauses_the_socket_then_gets_the_whole_body(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient, framing: str
) -> None:
    upstream = await serve(answering(big_answer(framing)))
    r = await client.request("GET", upstream.url(), {}, read_s=0.1)
    conn = r._conn
    assert conn is not None
    await until(lambda: conn._paused)
    assert conn._buffered > HIGH_WATER
    await asyncio.sleep(0.2)  # past read_s: while nothing waits, nothing times out
    assert b"".join([piece async for piece in r.chunks()]) == BIG
    r.release()
    assert client.idle == 1


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_upstream(serve: Callable[..., Awaitable[Upstream]], ca: trustme.CA) -> Upstream:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return await serve(answering(answer(b"secret")), tls=context)


async def test_https_to_a_server_whose_ca_is_trusted_works_and_pools(
    tls_upstream: Upstream, ca: trustme.CA
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    client = HttpClient(ssl_context=context)
    url = tls_upstream.url(scheme="https", host="localhost")
    assert [await get(client, url), await get(client, url)] == [b"secret", b"secret"]
    assert len(tls_upstream.peers) == 1
    client.close()


async def test_https_to_a_server_whose_ca_is_not_trusted_fails_verification(
    tls_upstream: Upstream, client: HttpClient
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await client.request("GET", tls_upstream.url(scheme="https", host="localhost"), {})


# --- edge cases a review found (each was a bug first) -------------------------------------


async def test_read_of_a_body_larger_than_high_water_returns_it_whole(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(BIG)))
    assert await get(client, upstream.url(), read_s=0.1) == BIG


async def test_bytes_after_the_answer_in_the_same_packet_are_not_part_of_it(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"ok") + answer(b"evil")))
    r = await client.request("GET", upstream.url(), {})
    assert (await r.read(), r.headers) == (b"ok", {"content-length": "2"})
    r.release()
    assert client.idle == 0


async def test_corrupt_gzip_body_is_a_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"not gzip at all", "Content-Encoding: gzip")))
    with pytest.raises(ConnectionError):
        await get(client, upstream.url())


async def test_answer_in_an_encoding_not_asked_for_fails_the_request_itself(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(answer(b"\x0b\x02\x80abc\x03", "Content-Encoding: br")))
    with pytest.raises(ConnectionError):
        r = await client.request("GET", upstream.url(), {})
        r.release()


async def test_read_s_bounds_the_wait_after_the_last_bytes(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    async def one_chunk_then_silence(peer: Peer) -> None:
        await peer.request()
        peer.writer.write(CHUNKED + chunk(b"data: 1\n\n"))
        await silent(peer)

    upstream = await serve(one_chunk_then_silence)
    r = await client.request("POST", upstream.url(), {}, b"{}", read_s=0.2)
    last = time.monotonic()
    with pytest.raises(TimeoutError):
        async for _ in r.chunks():
            last = time.monotonic()
    r.release()
    assert time.monotonic() - last < 0.3


async def test_head_request_ends_with_the_head(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    upstream = await serve(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"))
    r = await client.request("HEAD", upstream.url(), {}, read_s=0.1)
    assert await r.read() == b""
    r.release()


async def test_gzip_stream_cut_short_is_a_connection_error(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    packed = gzip.compress(b"hello world" * 50)
    upstream = await serve(answering(answer(packed[:-20], "Content-Encoding: gzip")))
    with pytest.raises(ConnectionError):
        await get(client, upstream.url())


async def test_interim_answer_is_skipped_for_the_final_one(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    upstream = await serve(answering(early_hints + answer(b"ok")))
    r = await client.request("GET", upstream.url(), {})
    assert (r.status, r.headers, await r.read()) == (200, {"content-length": "2"}, b"ok")
    r.release()


# --- bounds on what the answer holds -----------------------------------------------------


@pytest.mark.parametrize("size, fits", [(1000, True), (1001, False)])
async def test_max_bytes_bounds_the_body_of_an_answer(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient, size: int, fits: bool
) -> None:
    upstream = await serve(answering(answer(b"x" * size)))
    r = await client.request("GET", upstream.url(), {}, max_bytes=1000)
    try:
        if fits:
            assert await r.read() == b"x" * size
        else:
            with pytest.raises(AnswerTooLarge) as caught:
                await r.read()
            assert (str(caught.value), caught.value.limit) == (
                "the answer is larger than 1000 bytes",
                1000,
            )
    finally:
        r.release()
    assert client.idle == (1 if fits else 0)


async def test_gzip_bomb_is_refused_without_inflating_past_max_bytes(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB in about 64 KiB
    upstream = await serve(answering(answer(bomb, "Content-Encoding: gzip")))
    r = await client.request("GET", upstream.url(), {}, max_bytes=1 << 20)
    received = 0
    with pytest.raises(AnswerTooLarge):
        async for piece in r.chunks():
            received += len(piece)
    r.release()
    assert received <= 1 << 20


async def test_chunks_read_s_bounds_a_silence_in_the_body_alone(
    serve: Callable[..., Awaitable[Upstream]], client: HttpClient
) -> None:
    async def late_head_then_one_chunk_then_silence(peer: Peer) -> None:
        await peer.request()
        await asyncio.sleep(0.4)
        peer.writer.write(CHUNKED + chunk(b"data: 1\n\n"))
        await silent(peer)

    upstream = await serve(late_head_then_one_chunk_then_silence)
    r = await client.request("POST", upstream.url(), {}, b"{}", read_s=5)  # the head came in 5
    last = time.monotonic()
    with pytest.raises(TimeoutError):
        async for _ in r.chunks(read_s=0.2):
            last = time.monotonic()
    r.release()
    assert time.monotonic() - last < 0.3
