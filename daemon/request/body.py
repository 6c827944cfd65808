"""Reading request bodies within the configured limit ([server] max_body_mb).

The limit applies to the body as decoded: with a ``Content-Encoding`` the length sent is
the compressed one, so such a body is counted as aiohttp inflates it, a piece at a time,
and refused as soon as the count passes the limit (a gzip bomb is never held whole).
JSON bodies are then decoded by ``decode_json``; multipart bodies
(``audio/transcriptions``) are read into a ``Form`` whose identity field is taken out and
the rest passed through unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from waystone_cli.core import jsontext
from waystone_cli.core.errors import BodyTooLarge, InvalidRequest

_CHUNK = 1 << 16
# As aiohttp's own form reader allows: an upload has a handful of fields, and each part
# costs far more to parse than its bytes suggest.
MAX_PARTS = 1000


@dataclass(frozen=True)
class Part:
    name: str
    value: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Form:
    parts: list[Part] = field(default_factory=list)

    def field(self, name: str) -> str | None:
        for part in self.parts:
            if part.name == name and part.filename is None:
                return part.value.decode("utf-8", "replace")
        return None

    def pop_field(self, name: str) -> str | None:
        value = self.field(name)
        self.parts = [p for p in self.parts if not (p.name == name and p.filename is None)]
        return value

    def with_field(self, name: str, value: str) -> Form:
        parts = [p for p in self.parts if p.name != name]
        return Form([*parts, Part(name, value.encode())])

    def fields(self) -> dict[str, str]:
        return {
            p.name: p.value.decode("utf-8", "replace") for p in self.parts if p.filename is None
        }

    def encode(self) -> tuple[bytes, str]:
        """Serialize as multipart/form-data (a fresh boundary; names quoted per RFC 7578)."""
        boundary = uuid.uuid4().hex
        out = bytearray()
        for part in self.parts:
            disposition = f'form-data; name="{_quote(part.name)}"'
            if part.filename is not None:
                disposition += f'; filename="{_quote(part.filename)}"'
            out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
            if part.content_type:
                out += f"Content-Type: {part.content_type}\r\n".encode()
            out += b"\r\n" + part.value + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


async def read_body(request: web.Request, limit_mb: float) -> bytes:
    """The body as decoded (``Content-Encoding`` undone), refused once past the limit."""
    limit = _limit_bytes(request, limit_mb)
    if not _encoded(request) and request.content_length is not None:
        return await request.read()  # what is read is what was sent: within the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in _decoded_chunks(request):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(too_large(limit_mb))
        chunks.append(chunk)
    return b"".join(chunks)


def _limit_bytes(request: web.Request, limit_mb: float) -> int:
    """The limit in bytes; a body whose bytes as sent are already over it is refused unread."""
    limit = int(limit_mb * (1 << 20))
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(too_large(limit_mb))
    return limit


def _encoded(request: web.Request) -> bool:
    return request.headers.get("Content-Encoding", "identity").lower() != "identity"


async def _decoded_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """aiohttp inflates ``Content-Encoding`` a bounded piece at a time as the body is read
    (and pauses the socket while a piece waits), so counting these pieces bounds memory."""
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            yield chunk
    except web.RequestPayloadError as err:
        raise InvalidRequest(_unreadable(request, err)) from None


def _unreadable(request: web.Request, err: web.RequestPayloadError) -> str:
    if isinstance(err.__cause__, ContentEncodingError):
        encoding = request.headers.get("Content-Encoding", "")
        return f"request body is not valid for its Content-Encoding ({encoding})"
    return "request body could not be read (malformed framing)"


def decode_json(raw: bytes) -> object:
    """A JSON body, or InvalidRequest for anything ``jsontext.loads_client`` refuses."""
    try:
        return jsontext.loads_client(raw)
    except jsontext.ClientJSONError as err:
        raise InvalidRequest(f"request body is not valid JSON: {err}") from None


def too_large(limit_mb: float) -> str:
    return f"request body is over the limit of {limit_mb:g} MiB ([server] max_body_mb)"


async def read_multipart(request: web.Request, limit_mb: float) -> Form:
    """The parts of a multipart/form-data body, decoded and counted as for ``read_body``."""
    limit = _limit_bytes(request, limit_mb)
    try:
        return await _read_parts(await request.multipart(), limit, limit_mb)
    except web.RequestPayloadError as err:
        raise InvalidRequest(_unreadable(request, err)) from None
    except (AssertionError, ValueError, KeyError) as err:  # what aiohttp's reader raises
        raise InvalidRequest(f"request body is not valid multipart/form-data: {err}") from None


async def _read_parts(reader: aiohttp.MultipartReader, limit: int, limit_mb: float) -> Form:
    form = Form()
    size = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, aiohttp.BodyPartReader):
            raise InvalidRequest("nested multipart bodies are not supported")
        if len(form.parts) == MAX_PARTS:
            raise InvalidRequest(f"a multipart body may hold at most {MAX_PARTS} parts")
        # Headers count too: a bomb of empty parts is all headers.
        size += sum(len(k) + len(v) for k, v in part.headers.items())
        value = bytearray()
        while size <= limit and (chunk := await part.read_chunk(_CHUNK)):
            size += len(chunk)
            value += chunk
        if size > limit:
            raise BodyTooLarge(too_large(limit_mb))
        form.parts.append(
            Part(part.name or "", bytes(value), part.filename, part.headers.get("Content-Type"))
        )
    return form
