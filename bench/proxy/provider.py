"""A fast fake OpenAI provider for the proxy benchmark: ``POST /v1/chat/completions``.

It must never be the bottleneck, so it is a bare ``asyncio.Protocol`` HTTP/1.1 server
(keep-alive, Content-Length bodies) on uvloop rather than an aiohttp app: every answer
is a pre-built byte string, and the only work per request is finding the end of the
headers, the Content-Length and whether the body asks to stream.

- JSON: a small chat.completion with usage (12 prompt tokens of which 2 cached,
  5 completion tokens of which 1 reasoning), about 450 bytes.
- SSE (``"stream": true`` in the body): four content chunks, a finish chunk, a
  usage-only chunk when ``"include_usage": true`` is in the body, then ``[DONE]``, each
  event written as its own HTTP chunk (Transfer-Encoding: chunked), as OpenAI does.
- ``POST /v1/messages`` (``bench/messages_sse.py``): the same text as an Anthropic
  Messages stream, ``message_start`` to ``message_stop``, each event its own chunk.

    python bench/proxy/provider.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any, cast

MODEL = "bench-model"
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 1},
}
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def json_answer() -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello from the bench",
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    ).encode()
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % len(body)
    )
    return head + body


def sse_events(with_usage: bool) -> list[bytes]:
    pieces = ["Hello", " from", " the", " bench"]
    events = [
        _chunk({"role": "assistant", "content": p} if i == 0 else {"content": p})
        for i, p in enumerate(pieces)
    ]
    events.append(_chunk({}, finish="stop"))
    if with_usage:
        events.append(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": MODEL,
                "choices": [],
                "usage": USAGE,
            }
        )
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def messages_events() -> list[bytes]:
    """An Anthropic Messages stream of the same text: its usage in ``message_start``
    (input side, with cache reads and writes) and ``message_delta`` (output)."""
    usage = {
        "input_tokens": 4,
        "cache_read_input_tokens": 6,
        "cache_creation_input_tokens": 2,
        "output_tokens": 1,
    }
    message = {"id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
               "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for piece in ["Hello", " from", " the", " bench"]:
        delta = {"type": "text_delta", "text": piece}
        events.append({"type": "content_block_delta", "index": 0, "delta": delta})
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    ]
    return [
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events
    ]


def sse_answer(with_usage: bool, events: list[bytes] | None = None) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    )
    frames = sse_events(with_usage) if events is None else events
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in frames)
    return head + chunks + b"0\r\n\r\n"


class Answers:
    """The three pre-built answers, picked by looking at the request body's bytes."""

    def __init__(self) -> None:
        self.json = json_answer()
        self.sse = sse_answer(with_usage=False)
        self.sse_usage = sse_answer(with_usage=True)
        self.messages_sse = sse_answer(with_usage=True, events=messages_events())
        self.not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    def pick(self, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"POST /v1/messages "):  # the messages benchmark streams only
            return self.messages_sse
        if not head.startswith(b"POST /v1/chat/completions "):
            return self.not_found
        if b'"stream": true' in body or b'"stream":true' in body:
            usage = b'"include_usage": true' in body or b'"include_usage":true' in body
            return self.sse_usage if usage else self.sse
        return self.json


class HTTPServerProtocol(asyncio.Protocol):
    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        # Clients may pipeline, and a request may arrive in pieces: answer every
        # complete request in the buffer and keep the rest.
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end]
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            out.append(self.answers.pick(head, self.buffer[end + 4 : total]))
            self.buffer = self.buffer[total:]
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    answers = Answers()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HTTPServerProtocol(answers), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fast fake OpenAI provider for the benchmark.")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
