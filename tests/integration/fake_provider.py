"""A fake OpenAI-compatible provider on loopback that records what it receives.

Its answers are fixed so tests can work out tokens and costs by hand:

- chat: "Hello from fake", usage prompt 12 (2 cached), completion 5 (1 reasoning)
- completions: "fake completion", usage prompt 6, completion 3
- embeddings: usage prompt 8
- responses: "Hi there", usage input 9 (3 cached), output 4 (2 reasoning)
- moderations: flagged when the input contains "forbidden"
- audio/transcriptions: {"text": "transcribed"}, records the form fields

Models with special behaviour: ``error-model`` answers 500, ``cut-model`` streams two
chunks then drops the connection, ``slow-model`` streams a chunk every 0.1 s for 10 s
(and records whether the gateway hung up), ``flaky-model`` fails with 503 on its first
call, then works.  ``chunk_pause_s``, when set, makes every chat stream pause that long
between its chunks (a slow model thinking).  ``chat_usage``, when set, replaces the chat
usage (a provider reporting absurd counts), ``echo-401-model`` and ``echo-500-model`` answer
401 and 500 with an error page that echoes the request's headers (as some proxies' error
pages do), and ``usage_by_model`` replaces the chat usage of the models it names.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CHAT_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 1},
}
COMPLETION_USAGE = {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}
EMBED_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
RESPONSES_USAGE = {
    "input_tokens": 9,
    "output_tokens": 4,
    "total_tokens": 13,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens_details": {"reasoning_tokens": 2},
}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeProvider:
    seen: list[Seen] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    chunk_pause_s: float = 0.0

    chat_usage: dict[str, Any] | None = None
    usage_by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_post("/v1/moderations", self.moderations)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        return app

    async def _record(self, request: web.Request) -> Any:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body: Any = {
                k: (v if isinstance(v, str) else f"<file {v.filename}>") for k, v in form.items()
            }
        else:
            body = await request.json()
        self.seen.append(Seen(request.path, dict(request.headers), body))
        return body

    def _special(self, request: web.Request, body: dict[str, Any]) -> web.Response | None:
        model = body.get("model", "")
        self.calls[model] = self.calls.get(model, 0) + 1
        if model in ("echo-401-model", "echo-500-model"):
            echoed = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(
                text=f"<html><body><h1>Error</h1><pre>{echoed}</pre></body></html>",
                status=401 if model == "echo-401-model" else 500,
                content_type="text/html",
            )
        if model == "error-model" or (model == "flaky-model" and self.calls[model] == 1):
            status = 500 if model == "error-model" else 503
            return web.json_response(
                {
                    "error": {
                        "message": "the fake provider failed",
                        "type": "server_error",
                        "code": None,
                        "param": None,
                    }
                },
                status=status,
            )
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        special = self._special(request, body)
        if special is not None:
            return special
        if body.get("stream"):
            return await self._chat_stream(request, body)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello from fake"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": self.usage_by_model.get(
                    body["model"], CHAT_USAGE if self.chat_usage is None else self.chat_usage
                ),
            }
        )

    async def _chat_stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        model = body["model"]
        pieces = ["Hel", "lo ", "from ", "fake"]
        if model == "slow-model":
            pieces = ["tick "] * 100
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            try:
                await resp.write(_sse(_chunk(model, delta)))
                if model == "slow-model":
                    await asyncio.sleep(0.1)
                elif self.chunk_pause_s:
                    await asyncio.sleep(self.chunk_pause_s)
            except (ConnectionResetError, asyncio.CancelledError):
                self.hung_up.append(model)
                raise
            if model == "cut-model" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return resp
        await resp.write(_sse(_chunk(model, {}, finish="stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(
                _sse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": model,
                        "choices": [],
                        "usage": CHAT_USAGE,
                    }
                )
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for piece in ["fake ", "completion"]:
                await resp.write(
                    _sse(
                        {
                            "id": "cmpl-fake",
                            "object": "text_completion",
                            "created": 1,
                            "model": body["model"],
                            "choices": [{"index": 0, "text": piece, "finish_reason": None}],
                        }
                    )
                )
            if (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(
                    _sse(
                        {
                            "id": "cmpl-fake",
                            "object": "text_completion",
                            "created": 1,
                            "model": body["model"],
                            "choices": [],
                            "usage": COMPLETION_USAGE,
                        }
                    )
                )
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "text": "fake completion",
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": COMPLETION_USAGE,
            }
        )

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        return web.json_response(
            {
                "object": "list",
                "model": body["model"],
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "usage": EMBED_USAGE,
            }
        )

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        final = _response_object(body["model"])
        if not body.get("stream"):
            return web.json_response(final)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        created = dict(final, status="in_progress", output=[], usage=None)
        await resp.write(
            _sse(
                {"type": "response.created", "sequence_number": 0, "response": created},
                event="response.created",
            )
        )
        for n, piece in enumerate(["Hi ", "there"], start=1):
            await resp.write(
                _sse(
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": n,
                        "item_id": "msg_1",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    },
                    event="response.output_text.delta",
                )
            )
        await resp.write(
            _sse(
                {"type": "response.completed", "sequence_number": 3, "response": final},
                event="response.completed",
            )
        )
        return resp

    async def moderations(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        text = json.dumps(body.get("input"))
        flagged = "forbidden" in text
        return web.json_response(
            {
                "id": "modr-fake",
                "model": body.get("model", "omni-moderation-latest"),
                "results": [
                    {
                        "flagged": flagged,
                        "categories": {"violence": flagged},
                        "category_scores": {"violence": 0.9 if flagged else 0.01},
                    }
                ],
            }
        )

    async def transcriptions(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"text": "transcribed"})


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _response_object(model: str) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 1,
        "model": model,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi there", "annotations": []}],
            }
        ],
        "usage": RESPONSES_USAGE,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
