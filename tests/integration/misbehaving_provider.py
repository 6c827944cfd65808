"""A provider on loopback that misbehaves in what it sends back, one way per model name.

- ``ratelimited``: 429 with ``Retry-After`` and ``retry-after-ms``; ``overloaded``: the
  same as 503.
- ``trickle``: a JSON answer whose head comes at once and whose body comes one byte every
  ``TRICKLE_S`` seconds; ``late-head``: no head for 30 s.
- ``stall-stream``: one chunk of a stream, then nothing for 30 s; ``long-stream``: a
  chunk every ``TRICKLE_S`` seconds, ``LONG_CHUNKS`` of them, then usage and ``[DONE]``.
- ``huge-json``: a JSON answer of ``HUGE_MB`` MiB; ``gzip-bomb``: a gzip answer of a few
  KiB that inflates to ``HUGE_MB`` MiB; ``huge-stream``: an SSE stream of ``HUGE_MB`` MiB.
- ``usage``: a chat answer whose usage is ``usage_by_prompt[<the last message>]``
  (missing key: no usage at all); ``not-json``: a 200 whose body is not JSON.

Every loop is bounded by the answer's size; nothing waits longer than 30 s.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TRICKLE_S = 0.2
LONG_CHUNKS = 10
HUGE_MB = 8
MODELS = [
    "ratelimited",
    "overloaded",
    "trickle",
    "late-head",
    "stall-stream",
    "long-stream",
    "huge-json",
    "gzip-bomb",
    "huge-stream",
    "usage",
    "not-json",
]
_PIECE = 64 * 1024


@dataclass
class MisbehavingProvider:
    usage_by_prompt: dict[str, Any] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written, per model

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        return app

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        handler = getattr(self, "_" + model.replace("-", "_"))
        result: web.StreamResponse = await handler(request, body)
        return result

    async def _ratelimited(
        self, request: web.Request, body: Any, status: int = 429
    ) -> web.Response:
        error = {"message": "slow down", "type": "rate_limit", "param": None, "code": None}
        return web.json_response(
            {"error": error}, status=status, headers={"Retry-After": "7", "retry-after-ms": "7000"}
        )

    async def _overloaded(self, request: web.Request, body: Any) -> web.Response:
        return await self._ratelimited(request, body, status=503)

    async def _trickle(self, request: web.Request, body: Any) -> web.StreamResponse:
        data = json.dumps(_completion(body["model"], {"prompt_tokens": 1})).encode()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(len(data)):
            await resp.write(data[i : i + 1])
            self.sent[body["model"]] = i + 1
            await asyncio.sleep(TRICKLE_S)
        return resp

    async def _late_head(self, request: web.Request, body: Any) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response(_completion(body["model"], None))

    async def _stall_stream(self, request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_sse(_chunk(body["model"], "Hello")))
        await asyncio.sleep(30)
        return resp

    async def _long_stream(self, request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(LONG_CHUNKS):
            await resp.write(_sse(_chunk(body["model"], "tick ")))
            await asyncio.sleep(TRICKLE_S)
        usage = {"prompt_tokens": 8, "completion_tokens": LONG_CHUNKS, "total_tokens": 18}
        await resp.write(_sse({**_chunk(body["model"], ""), "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _huge_json(self, request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"padding": "')
        await self._pad(resp, body["model"], b"x" * _PIECE)
        await resp.write(b'"}')
        return resp

    async def _gzip_bomb(self, request: web.Request, body: Any) -> web.Response:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
        piece = b" " * _PIECE
        parts = [packer.compress(b'{"padding": "')]
        parts += [packer.compress(piece) for _ in range(HUGE_MB * (1 << 20) // _PIECE)]
        parts.append(packer.compress(b'"}') + packer.flush())
        return web.Response(
            body=b"".join(parts),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def _huge_stream(self, request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        event = _sse(_chunk(body["model"], "x" * 1000))
        await self._pad(resp, body["model"], event * (_PIECE // len(event)))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def _pad(self, resp: web.StreamResponse, model: str, piece: bytes) -> None:
        for _ in range(HUGE_MB * (1 << 20) // len(piece) + 1):
            try:
                await resp.write(piece)
            except ConnectionError:  # the gateway hung up: what it should do
                return
            self.sent[model] = self.sent.get(model, 0) + len(piece)

    async def _usage(self, request: web.Request, body: Any) -> web.Response:
        prompt = body["messages"][-1]["content"]
        if prompt not in self.usage_by_prompt:
            return web.json_response(_completion(body["model"], None))
        return web.json_response(_completion(body["model"], self.usage_by_prompt[prompt]))

    async def _not_json(self, request: web.Request, body: Any) -> web.Response:
        return web.Response(text="<html>" + "a" * 394 + "</html>", content_type="text/html")


def _completion(model: str, usage: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "chatcmpl-bad",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from a bad one"},
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


def _chunk(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bad",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()
