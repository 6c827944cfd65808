"""The mock provider's answers to Anthropic's Messages API (``/v1/messages`` and its
``count_tokens``), in Anthropic's shapes.

The reply is the mock's usual one (``daemon.providers.mock.reply_text``).  Usage, as
Anthropic counts it (``input_tokens`` excludes the cache): of the estimated input
(``estimate_input_tokens("messages", body)``), a request that marks a block with
``cache_control`` (Anthropic's prompt caching), or names a model containing "cache",
reads half from the cache (``cache_read_input_tokens``) and writes a quarter
(``cache_creation_input_tokens``, split half and half between the 5-minute and the
1-hour cache, the 1-hour half rounded down); the rest is ``input_tokens``.  Output
tokens are the reply's estimate.  A stream reports the input side in ``message_start``
and the output in ``message_delta``; a model containing "cut" stops after half of the
text deltas, with no ``message_delta`` or ``message_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from daemon.providers.mock_routes import Json, request_id
from waystone_cli.core.sse import encode_event
from waystone_cli.core.usage import estimate_input_tokens, estimate_tokens


def messages_usage(body: Mapping[str, Any], model: str, text: str) -> Json:
    total = estimate_input_tokens("messages", body)
    reads, writes = (total // 2, total // 4) if _caches(body, model) else (0, 0)
    return {
        "input_tokens": total - reads - writes,
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": reads,
        "cache_creation": {
            "ephemeral_5m_input_tokens": writes - writes // 2,
            "ephemeral_1h_input_tokens": writes // 2,
        },
        "output_tokens": estimate_tokens(text),
        "service_tier": "standard",
    }


def _caches(body: Mapping[str, Any], model: str) -> bool:
    if "cache" in model:
        return True
    system = body.get("system")
    blocks = list(system) if isinstance(system, list) else []
    for item in body.get("messages") or ():
        content = item.get("content") if isinstance(item, Mapping) else None
        blocks.extend(content if isinstance(content, list) else ())
    return any(isinstance(b, Mapping) and "cache_control" in b for b in blocks)


def message(body: Mapping[str, Any], model: str, text: str, cut: bool) -> Json:
    return {
        "id": request_id("msg_", body, model),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "max_tokens" if cut else "end_turn",
        "stop_sequence": None,
        "usage": messages_usage(body, model, text),
    }


def count_tokens(body: Mapping[str, Any], model: str) -> Json:
    return {"input_tokens": estimate_input_tokens("messages", body)}


def messages_stream(
    body: Mapping[str, Any], model: str, text: str, cut: bool, pieces: list[str]
) -> Iterator[bytes]:
    usage = messages_usage(body, model, text)
    start = {**message(body, model, text, cut), "content": [], "stop_reason": None}
    start["usage"] = {**usage, "output_tokens": 1}
    yield _event("message_start", message=start)
    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    yield _event("ping")
    for piece in pieces[: len(pieces) // 2] if "cut" in model else pieces:
        yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    if "cut" in model:
        return
    yield _event("content_block_stop", index=0)
    delta = {"stop_reason": "max_tokens" if cut else "end_turn", "stop_sequence": None}
    yield _event("message_delta", delta=delta, usage={"output_tokens": usage["output_tokens"]})
    yield _event("message_stop")


def error_body(message: str, kind: str) -> Json:
    """Anthropic's error envelope."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def _event(kind: str, **fields: Any) -> bytes:
    return encode_event(json.dumps({"type": kind, **fields}, separators=(",", ":")), kind)
