"""Hostile or malformed client input: a 400 in the OpenAI envelope, nothing forwarded, and
the ledger row every refused model call gets; never a 500 with a traceback."""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import Gateway
from waystone_cli.core.jsontext import MAX_DEPTH

MESSAGES = '"messages": [{"role": "user", "content": "hi"}]'


def _chat_text(extra: str) -> bytes:
    return ('{"model": "gpt-test", ' + MESSAGES + ", " + extra + "}").encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def _send(
    gateway: Gateway, data: bytes, path: str = "v1/chat/completions", **headers: str
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + path,
            data=data,
            headers={"Content-Type": "application/json", **headers},
        ) as resp,
    ):
        return resp.status, await resp.json()


def _assert_refused(status: int, body: Any, message: str, param: str | None = None) -> None:
    assert status == 400
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_request",
        param,
    )
    assert message in error["message"]


@pytest.mark.parametrize(
    ("data", "message", "param"),
    [
        ("{" + MESSAGES + ', "model": ' + _nested(1000) + "}", "nested deeper than", None),
        (_nested(5000), "nested deeper than", None),
        (
            '"tools": [' + '{"a": ' * 980 + "1" + "}" * 980 + "]",
            "nested deeper than",
            None,
        ),
        ('"user": "\\ud800"', "lone surrogate", None),
        ('"x": ["\\udfff", 1234567890123456789012]', "lone surrogate", None),
        ('"max_tokens": 1' + "0" * 400, "max_tokens must be a positive integer", "max_tokens"),
        ('"temperature": NaN', "NaN", None),
        ('"temperature": Infinity', "Infinity", None),
        ('"logit_bias": {"1": -Infinity}', "-Infinity", None),
    ],
    ids=[
        "nested-1000",
        "nested-5000",
        "tools-980",
        "lone-surrogate",
        "lone-low-surrogate-beside-a-big-int",
        "max-tokens-10e400",
        "nan",
        "infinity",
        "minus-infinity",
    ],
)
async def test_malformed_json_is_a_400_nothing_forwarded_and_a_row(
    gateway: Gateway, data: str, message: str, param: str | None
) -> None:
    body_text = data if data.startswith(("{", "[")) else _chat_text(data).decode()
    status, body = await _send(gateway, body_text.encode())
    _assert_refused(status, body, message, param)
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (400, "invalid_request")


async def test_tools_nested_to_the_depth_allowed_are_estimated_and_forwarded(
    gateway: Gateway,
) -> None:
    # The body is level 1, the tools list level 2: the tool itself nests the rest.
    inner = MAX_DEPTH - 2
    tools = '"tools": [' + '{"a": ' * inner + '"\\ud83d\\ude00"' + "}" * inner + "]"
    status, _ = await _send(gateway, _chat_text(tools))
    assert status == 200
    [seen] = gateway.provider.seen
    assert json.dumps(seen.body["tools"]) == json.dumps(json.loads("{" + tools + "}")["tools"])


async def test_identify_refuses_deep_json_with_a_400(gateway: Gateway) -> None:
    status, body = await _send(
        gateway, ('{"user": ' + _nested(1000) + "}").encode(), "api/identify"
    )
    _assert_refused(status, body, "nested deeper than")
    status, body = await _send(gateway, b'{"user": "\\ud800"}', "api/identify")
    _assert_refused(status, body, "lone surrogate")


def _multipart(closing: bytes) -> bytes:
    return (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="model"\r\n\r\n'
        b"whisper-test\r\n"
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n"
        b"RIFF fake audio\r\n" + closing
    )


@pytest.mark.parametrize(
    "closing", [b"", b"--WRONG--\r\n", b"--BOUNDARY"], ids=["missing", "wrong", "unterminated"]
)
async def test_multipart_without_its_closing_boundary_is_a_400_and_a_row(
    gateway: Gateway, closing: bytes
) -> None:
    status, body = await _send(
        gateway,
        _multipart(closing),
        "v1/audio/transcriptions",
        **{"Content-Type": MULTIPART},
    )
    _assert_refused(status, body, "multipart")
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (400, "invalid_request")


# --- the body limit applies to the decoded body ---------------------------------------


def _compressed(encoding: str, chunks: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9, wbits=31 if encoding == "gzip" else 15)
    return b"".join(packer.compress(chunk) for chunk in chunks) + packer.flush()


CHAT_HEAD = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "'
CHAT_TAIL = b'"}]}'
FORM_HEAD, FORM_TAIL = _multipart(b"--BOUNDARY--\r\n").split(b"RIFF fake audio")
MULTIPART = "multipart/form-data; boundary=BOUNDARY"


def _chat_of(content_bytes: int) -> Iterator[bytes]:
    """A chat body whose one message holds ``content_bytes`` spaces, in 1 MiB pieces."""
    yield CHAT_HEAD
    for _ in range(content_bytes >> 20):
        yield b" " * (1 << 20)
    yield CHAT_TAIL


def _gzip_bomb(head: bytes, spaces_mib: int, tail: bytes) -> bytes:
    """``head``, ``spaces_mib`` MiB of spaces and ``tail``, gzipped in well under a second:
    after a sync flush, deflate codes each further MiB of spaces alike, so it is repeated."""
    mib = b" " * (1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(head + mib) + packer.flush(zlib.Z_SYNC_FLUSH)
    again = packer.compress(mib) + packer.flush(zlib.Z_SYNC_FLUSH)
    last = packer.compress(mib + tail) + packer.flush()
    crc = zlib.crc32(head)
    for _ in range(spaces_mib):
        crc = zlib.crc32(mib, crc)
    size = len(head) + (spaces_mib << 20) + len(tail)
    trailer = struct.pack("<II", zlib.crc32(tail, crc), size & 0xFFFFFFFF)
    return GZIP_HEADER + first + again * (spaces_mib - 2) + last + trailer


GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_the_gzip_bomb_is_one_indeed() -> None:
    inflater = zlib.decompressobj(wbits=31)
    pending, size = _gzip_bomb(CHAT_HEAD, 16, CHAT_TAIL), 0
    while pending:
        size += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
    assert inflater.eof and size == len(b"".join(_chat_of(16 << 20)))


class PeakRss:
    """This process's resident memory, sampled every few milliseconds on a thread."""

    def __init__(self) -> None:
        self.idle = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler")

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_an_encoded_body_over_the_limit_once_decoded_is_a_413(
    start_gateway: Any, encoding: str
) -> None:
    gateway = await start_gateway("[server]\nmax_body_mb = 1\n")
    data = _compressed(encoding, _chat_of(3 << 20))
    assert len(data) < 1 << 20  # within the limit as sent
    status, body = await _send(gateway, data, **{"Content-Encoding": encoding})
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert row["status"] == 413


async def test_an_encoded_body_within_the_limit_is_decoded_and_forwarded(gateway: Gateway) -> None:
    data = _compressed("gzip", _chat_of(1 << 20))
    status, _ = await _send(gateway, data, **{"Content-Encoding": "gzip"})
    assert status == 200
    [seen] = gateway.provider.seen
    assert seen.body["messages"][0]["content"] == " " * (1 << 20)


@pytest.mark.parametrize(
    ("path", "content_type", "head", "tail"),
    [
        ("v1/chat/completions", "application/json", CHAT_HEAD, CHAT_TAIL),
        ("v1/audio/transcriptions", MULTIPART, FORM_HEAD, FORM_TAIL),
    ],
    ids=["json", "multipart"],
)
async def test_a_gzip_bomb_is_refused_without_being_inflated(
    start_gateway: Any, path: str, content_type: str, head: bytes, tail: bytes
) -> None:
    gateway = await start_gateway("[server]\nmax_body_mb = 1\n")
    bomb = _gzip_bomb(head, 256, tail)
    assert len(bomb) < 1 << 20
    with PeakRss() as rss:
        status, body = await _send(
            gateway, bomb, path, **{"Content-Type": content_type, "Content-Encoding": "gzip"}
        )
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert rss.peak - rss.idle < 48 << 20  # decoded, the bomb is 256 MiB
    assert gateway.provider.seen == []


async def test_a_corrupt_gzip_body_is_a_400(gateway: Gateway) -> None:
    data = GZIP_HEADER + b"\xff" * 64  # an invalid deflate block
    status, body = await _send(gateway, data, **{"Content-Encoding": "gzip"})
    _assert_refused(status, body, "gzip")
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert row["status"] == 400


EMPTY_PART = b'--BOUNDARY\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n'


def _name_part(name_bytes: int) -> bytes:
    return EMPTY_PART.replace(b'"x"', b'"' + b"x" * name_bytes + b'"')


@pytest.mark.parametrize(
    "form",
    [
        _multipart(b"--BOUNDARY--\r\n").replace(b"RIFF fake audio", b"\0" * (3 << 20)),
        FORM_HEAD + b"RIFF\r\n" + _name_part(1200) * 900 + b"--BOUNDARY--\r\n",
    ],
    ids=["one-big-part", "all-headers"],
)
async def test_multipart_over_the_limit_once_decoded_is_a_413(
    start_gateway: Any, form: bytes
) -> None:
    gateway = await start_gateway("[server]\nmax_body_mb = 1\n")
    status, body = await _send(
        gateway,
        _compressed("gzip", iter([form])),
        "v1/audio/transcriptions",
        **{"Content-Type": MULTIPART, "Content-Encoding": "gzip"},
    )
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert row["status"] == 413


async def test_multipart_of_more_than_1000_parts_is_a_400(gateway: Gateway) -> None:
    form = FORM_HEAD + b"RIFF\r\n" + EMPTY_PART * 999 + b"--BOUNDARY--\r\n"
    status, body = await _send(
        gateway, form, "v1/audio/transcriptions", **{"Content-Type": MULTIPART}
    )
    _assert_refused(status, body, "at most 1000 parts")
    assert gateway.provider.seen == []
