"""A fake Anthropic Messages API on loopback that records what it receives.

It checks what the real API checks where a gateway could get it wrong: the key comes as
``x-api-key`` (401 ``authentication_error`` otherwise), ``anthropic-version`` is set, and
``metadata`` holds no key but ``user_id`` (400 ``invalid_request_error``, as the real API
answers "Extra inputs are not permitted").  Its answers are fixed so tests can work out
tokens by hand:

- ``/v1/messages``: "Hello from Claude", usage ``input_tokens`` 10 (uncached),
  ``cache_read_input_tokens`` 20, ``cache_creation_input_tokens`` 30 (split 10 for five
  minutes and 20 for an hour), ``output_tokens`` 7.  Streamed: ``message_start`` with the
  input side (and ``output_tokens`` 1, as the real API sends), three text deltas, then
  ``message_delta`` with ``output_tokens`` 7 and ``message_stop``.
- ``/v1/messages/count_tokens``: ``{"input_tokens": 42}``.

Models with special behaviour: ``claude-deltas`` streams three ``message_delta`` events
with cumulative counts 3, 5 and 7 (a sum would say 15); ``claude-cut`` streams
``message_start`` and two deltas, then drops the connection; ``claude-error`` answers 500
and ``claude-overloaded`` 529, in Anthropic's envelope; ``claude-slow`` answers after 2 s.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ANTHROPIC_KEY = "sk-ant-fake-provider-key"
USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 20,
    "cache_creation_input_tokens": 30,
    "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
    "output_tokens": 7,
    "service_tier": "standard",
}
TEXT = ["Hello", " from", " Claude"]
METADATA_KEYS = ("user_id",)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeAnthropic:
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        return app

    async def _checked(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.seen.append(Seen(request.path, dict(request.headers), body))
        if request.headers.get("x-api-key") != ANTHROPIC_KEY:
            return body, error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return body, error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        metadata = body.get("metadata") or {}
        for key in metadata:
            if key not in METADATA_KEYS:
                return body, error(
                    400, "invalid_request_error", f"metadata.{key}: Extra inputs are not permitted"
                )
        model = body.get("model", "")
        if model == "claude-error":
            return body, error(500, "api_error", "Internal server error")
        if model == "claude-overloaded":
            return body, error(529, "overloaded_error", "Overloaded")
        if model == "claude-slow":
            await asyncio.sleep(2)
        return body, None

    async def count_tokens(self, request: web.Request) -> web.Response:
        _, refused = await self._checked(request)
        return refused or web.json_response({"input_tokens": 42})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._checked(request)
        if refused is not None:
            return refused
        if body.get("stream"):
            return await self._stream(request, body["model"])
        return web.json_response(
            {
                **_message(body["model"]),
                "content": [{"type": "text", "text": "".join(TEXT)}],
                "stop_reason": "end_turn",
                "usage": USAGE,
            },
            headers={"request-id": "req_fake"},
        )

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        start = {**_message(model), "content": [], "usage": {**USAGE, "output_tokens": 1}}
        await resp.write(_sse("message_start", message=start))
        block = {"type": "text", "text": ""}
        await resp.write(_sse("content_block_start", index=0, content_block=block))
        for i, piece in enumerate(TEXT):
            delta = {"type": "text_delta", "text": piece}
            await resp.write(_sse("content_block_delta", index=0, delta=delta))
            if model == "claude-cut" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return resp
        await resp.write(_sse("content_block_stop", index=0))
        counts = [3, 5, 7] if model == "claude-deltas" else [7]
        for n, count in enumerate(counts):
            last = n == len(counts) - 1
            delta = {"stop_reason": "end_turn" if last else None, "stop_sequence": None}
            await resp.write(_sse("message_delta", delta=delta, usage={"output_tokens": count}))
        await resp.write(_sse("message_stop"))
        await resp.write_eof()
        return resp


def error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status
    )


def _message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
    }


def _sse(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()
