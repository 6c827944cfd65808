"""Reading request bodies within the configured limit ([server] max_body_mb).

JSON bodies are read whole (counting as they arrive, so an over-long body is refused
without being held); multipart bodies (``audio/transcriptions``) are read into a
``Form`` whose identity field is taken out and the rest passed through unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from waystone_cli.core import jsontext
from waystone_cli.core.errors import BodyTooLarge, InvalidRequest


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
    limit = int(limit_mb * (1 << 20))
    if request.content_length is not None:
        if request.content_length > limit:
            raise BodyTooLarge(too_large(limit_mb))
        return await request.read()  # the length is known and within the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(too_large(limit_mb))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes) -> object:
    """A JSON body, or InvalidRequest for anything ``jsontext.loads_client`` refuses."""
    try:
        return jsontext.loads_client(raw)
    except jsontext.ClientJSONError as err:
        raise InvalidRequest(f"request body is not valid JSON: {err}") from None


def too_large(limit_mb: float) -> str:
    return f"request body is over the limit of {limit_mb:g} MiB ([server] max_body_mb)"


async def read_multipart(request: web.Request, limit_mb: float) -> Form:
    limit_bytes = int(limit_mb * (1 << 20))
    if request.content_length is not None and request.content_length > limit_bytes:
        raise BodyTooLarge(too_large(limit_mb))
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError) as err:
        raise InvalidRequest(f"expected a multipart/form-data body: {err}") from None
    form = Form()
    size = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader):
            raise InvalidRequest("nested multipart bodies are not supported")
        value = await part.read(decode=False)
        size += len(value)
        if size > limit_bytes:
            raise BodyTooLarge(too_large(limit_mb))
        form.parts.append(
            Part(part.name or "", bytes(value), part.filename, part.headers.get("Content-Type"))
        )
    return form
