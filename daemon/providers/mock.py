"""The built-in offline provider (``kind = "mock"``): deterministic answers for every route.

Pure functions, no I/O: the same request always gets the same bytes, so tests can
predict exact token counts and costs.

The reply (chat, completions, responses) is::

    "This is a mock answer to: " + the first 8 words of the last user message (or the
    prompt), joined by single spaces + ". " + FILLER

where an empty prompt reads "(empty)".  Usage, by ``waystone_cli.core.usage``'s heuristic:

- input tokens = ``estimate_input_tokens(route, body)``;
- output tokens = ``estimate_tokens(reply)`` = ``ceil(len(reply) / 4)``;
- a cap (``max_tokens``, ``max_completion_tokens`` or ``max_output_tokens``) of N cuts the
  reply to its first 4·N characters (so exactly N output tokens) and the finish reason is
  "length" (Responses: status "incomplete", reason "max_output_tokens");
- a model whose name contains "cache" reports ``cached_tokens = input_tokens // 2``; one
  containing "reason" reports ``reasoning_tokens = 16`` on top of the text's tokens
  (output tokens include them, as OpenAI counts).

Special model names, for tests: one containing "fail" answers 500 with OpenAI's error
envelope (``mock_error`` says so before a stream starts); one containing "cut" streams
half of its content deltas, then stops without finish, usage or ``[DONE]``.

Embeddings, moderations, transcriptions and the model list are answered by
``daemon.providers.mock_routes``; Anthropic's Messages API by
``daemon.providers.mock_messages``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from daemon.providers.mock_messages import count_tokens, error_body, message, messages_stream
from daemon.providers.mock_routes import (
    Json,
    embeddings,
    model_list,
    moderations,
    request_id,
    transcription,
)
from waystone_cli.core.errors import UpstreamError
from waystone_cli.core.request_fields import CAP_KEYS
from waystone_cli.core.sse import encode_event
from waystone_cli.core.usage import (
    MESSAGES_ROUTES,
    estimate_input_tokens,
    estimate_tokens,
    last_user_text,
)

FILLER = (
    "This reply comes from the built-in mock provider: the same request always gets "
    "the same words, and its usage counts four characters as one token."
)
PREFIX = "This is a mock answer to: "
CREATED = 1_700_000_000
REASONING_TOKENS = 16
WORDS_PER_DELTA = 3


def mock_error(route: str, body: Mapping[str, Any], model: str) -> tuple[int, Json] | None:
    """The error this request gets (status, the route's envelope), or None if it succeeds."""
    if route in MESSAGES_ROUTES:
        return _messages_error(body, model)
    if "fail" in model:
        return 500, _envelope(
            f'mock provider: model "{model}" fails on purpose (its name contains "fail")',
            "server_error",
            "mock_failure",
        )
    required = {
        "chat/completions": "messages",
        "completions": "prompt",
        "embeddings": "input",
        "responses": "input",
        "moderations": "input",
        "audio/transcriptions": "file",
    }.get(route)
    if required is not None and body.get(required) is None:
        return 400, _envelope(
            f"Missing required parameter: '{required}'.", "invalid_request_error", None, required
        )
    if route not in _JSON_ROUTES:
        return 404, _envelope(
            f"mock provider: unknown route {route!r}", "invalid_request_error", "not_found"
        )
    return None


def _messages_error(body: Mapping[str, Any], model: str) -> tuple[int, Json] | None:
    if "fail" in model:
        reason = f'mock provider: model "{model}" fails on purpose (its name contains "fail")'
        return 500, error_body(reason, "api_error")
    if body.get("messages") is None:
        return 400, error_body("messages: Field required", "invalid_request_error")
    return None


def mock_json(route: str, body: Mapping[str, Any], model: str) -> tuple[int, Json]:
    """A non-streamed answer: (HTTP status, JSON body)."""
    error = mock_error(route, body, model)
    if error is not None:
        return error
    return 200, _JSON_ROUTES[route](body, model)


def mock_stream(route: str, body: Mapping[str, Any], model: str) -> Iterator[bytes]:
    """A streamed answer as SSE frames.

    Call ``mock_error`` first to answer a failing request with its status; called anyway,
    this raises ``UpstreamError`` at once (before any frame) rather than stream a success.
    """
    error = mock_error(route, body, model)
    if error is not None:
        raise UpstreamError(str(error[1]["error"]["message"]))
    if route == "chat/completions":
        return _chat_stream(body, model)
    if route == "completions":
        return _completions_stream(body, model)
    if route == "responses":
        return _responses_stream(body, model)
    if route == "messages":
        text, cut = reply_text(route, body)
        return messages_stream(body, model, text, cut, _deltas(text))
    raise ValueError(f"mock provider: route {route!r} does not stream")


# --- the reply and its usage ------------------------------------------------------------


def reply_text(route: str, body: Mapping[str, Any]) -> tuple[str, bool]:
    """The reply and whether the token cap cut it."""
    words = last_user_text(route, body).split()[:8]
    text = f"{PREFIX}{' '.join(words) if words else '(empty)'}. {FILLER}"
    cap = next((body[k] for k in CAP_KEYS if isinstance(body.get(k), int)), None)
    if cap is not None and estimate_tokens(text) > cap:
        return text[: 4 * max(cap, 0)], True
    return text, False


def _token_counts(
    route: str, body: Mapping[str, Any], model: str, text: str
) -> tuple[int, int, int, int]:
    """(input, output, cached, reasoning) tokens."""
    input_tokens = estimate_input_tokens(route, body)
    reasoning = REASONING_TOKENS if "reason" in model else 0
    cached = input_tokens // 2 if "cache" in model else 0
    return input_tokens, estimate_tokens(text) + reasoning, cached, reasoning


def _chat_usage(route: str, body: Mapping[str, Any], model: str, text: str) -> Json:
    input_tokens, output_tokens, cached, reasoning = _token_counts(route, body, model, text)
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _responses_usage(body: Mapping[str, Any], model: str, text: str) -> Json:
    input_tokens, output_tokens, cached, reasoning = _token_counts("responses", body, model, text)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _envelope(message: str, kind: str, code: str | None, param: str | None = None) -> Json:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _deltas(text: str) -> list[str]:
    """The text in pieces of a few words, each carrying its trailing space."""
    words = re.findall(r"\S+\s*", text)
    return ["".join(words[i : i + WORDS_PER_DELTA]) for i in range(0, len(words), WORDS_PER_DELTA)]


def _sse(data: Json, event: str | None = None) -> bytes:
    return encode_event(json.dumps(data, separators=(",", ":")), event)


_DONE = encode_event("[DONE]")


# --- chat/completions and completions -----------------------------------------------------


def _chat(body: Mapping[str, Any], model: str) -> Json:
    text, cut = reply_text("chat/completions", body)
    return {
        "id": request_id("chatcmpl-", body, model),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if cut else "stop",
            }
        ],
        "usage": _chat_usage("chat/completions", body, model, text),
    }


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _chat_stream(body: Mapping[str, Any], model: str) -> Iterator[bytes]:
    text, cut = reply_text("chat/completions", body)
    with_usage = _include_usage(body)
    head = {
        "id": request_id("chatcmpl-", body, model),
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_mock",
    }
    extra: Json = {"usage": None} if with_usage else {}

    def chunk(delta: Json, finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
    pieces = _deltas(text)
    for piece in pieces[: len(pieces) // 2] if "cut" in model else pieces:
        yield chunk({"content": piece}, None)
    if "cut" in model:
        return
    yield chunk({}, "length" if cut else "stop")
    if with_usage:
        yield _sse(
            {**head, "choices": [], "usage": _chat_usage("chat/completions", body, model, text)}
        )
    yield _DONE


def _completion(body: Mapping[str, Any], model: str) -> Json:
    text, cut = reply_text("completions", body)
    usage = _chat_usage("completions", body, model, text)
    return {
        "id": request_id("cmpl-", body, model),
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": "length" if cut else "stop",
            }
        ],
        "usage": {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }


def _completions_stream(body: Mapping[str, Any], model: str) -> Iterator[bytes]:
    full = _completion(body, model)
    head = {k: full[k] for k in ("id", "object", "created", "model")}
    extra: Json = {"usage": None} if _include_usage(body) else {}

    def chunk(text: str, finish: str | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "choices": [choice], **extra})

    pieces = _deltas(full["choices"][0]["text"])
    for piece in pieces[: len(pieces) // 2] if "cut" in model else pieces:
        yield chunk(piece, None)
    if "cut" in model:
        return
    yield chunk("", full["choices"][0]["finish_reason"])
    if extra:
        yield _sse({**head, "choices": [], "usage": full["usage"]})
    yield _DONE


def _message(body: Mapping[str, Any], model: str) -> Json:
    text, cut = reply_text("messages", body)
    return message(body, model, text, cut)


# --- responses ------------------------------------------------------------------------


def _response(body: Mapping[str, Any], model: str, status: str | None = None) -> Json:
    """The Responses API object; ``status="in_progress"`` gives the one streams open with."""
    text, cut = reply_text("responses", body)
    final = "incomplete" if cut else "completed"
    rid = request_id("resp_", body, model)
    message = {
        "type": "message",
        "id": "msg_" + rid[5:],
        "status": final,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    done = status is None
    return {
        "id": rid,
        "object": "response",
        "created_at": CREATED,
        "status": final if done else status,
        "model": model,
        "output": [message] if done else [],
        "usage": _responses_usage(body, model, text) if done else None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut and done else None,
        "error": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": True,
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
    }


def _responses_stream(body: Mapping[str, Any], model: str) -> Iterator[bytes]:
    final = _response(body, model)
    message = final["output"][0]
    text = message["content"][0]["text"]
    item = {**message, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    yield event("response.created", response=_response(body, model, "in_progress"))
    yield event("response.in_progress", response=_response(body, model, "in_progress"))
    yield event("response.output_item.added", output_index=0, item=item)
    yield event("response.content_part.added", part=part, **at)
    pieces = _deltas(text)
    for piece in pieces[: len(pieces) // 2] if "cut" in model else pieces:
        yield event("response.output_text.delta", delta=piece, logprobs=[], **at)
    if "cut" in model:
        return
    yield event("response.output_text.done", text=text, logprobs=[], **at)
    yield event("response.content_part.done", part={**part, "text": text}, **at)
    yield event("response.output_item.done", output_index=0, item=message)
    yield event(f"response.{final['status']}", response=final)


_JSON_ROUTES: dict[str, Callable[[Mapping[str, Any], str], Json]] = {
    "chat/completions": _chat,
    "completions": _completion,
    "embeddings": embeddings,
    "responses": _response,
    "moderations": moderations,
    "audio/transcriptions": transcription,
    "models": model_list,
    "messages": _message,
    "messages/count_tokens": count_tokens,
}
