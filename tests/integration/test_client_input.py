"""Hostile or malformed client input: a 400 in the OpenAI envelope, nothing forwarded, and
the ledger row every refused model call gets; never a 500 with a traceback."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import Gateway

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
        **{"Content-Type": "multipart/form-data; boundary=BOUNDARY"},
    )
    _assert_refused(status, body, "multipart")
    assert gateway.provider.seen == []
    [row] = await gateway.rows()
    assert (row["status"], row["outcome"]) == (400, "invalid_request")
