"""Token usage: read from a provider's answer, tallied over a stream, or estimated.

Counts follow OpenAI's conventions: ``input_tokens`` includes ``cached_tokens`` and
``audio_tokens`` (the prompt's), ``output_tokens`` includes ``reasoning_tokens``.
Chat and completions name them ``prompt_tokens`` / ``completion_tokens`` with
``prompt_tokens_details`` / ``completion_tokens_details``; the Responses API (and
gpt-4o transcriptions) name them ``input_tokens`` / ``output_tokens`` with
``input_tokens_details`` / ``output_tokens_details``.  Both spellings are accepted on
every route, since OpenAI-compatible providers mix them.  Anthropic's Messages API counts
its cache apart from its ``input_tokens``: ``usage_from_messages`` adds it back, so that
``input_tokens`` is all of the input there too (``cache_write_tokens`` are the writes).

Estimates (for a stream cut short, for reservations and for the mock provider) use one
documented heuristic: ``ceil(characters / 4)`` tokens for a non-empty text, 0 for an empty
one.  For chat, each message adds 3 tokens of framing and the reply adds 3, as OpenAI's
cookbook counts; an image part counts 85 tokens (a low-detail image).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

MESSAGE_OVERHEAD = 3
REPLY_OVERHEAD = 3
IMAGE_TOKENS = 85
# Anthropic's Messages API and its token counting: the same body, so the same estimate.
MESSAGES_ROUTES = ("messages", "messages/count_tokens")


class Usage(NamedTuple):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    # Of ``cache_write_tokens``, those written for an hour (Anthropic's 1-hour cache,
    # priced above the 5-minute one); the rest were written for five minutes.
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def usage_from_body(route: str, body: Mapping[str, Any]) -> Usage | None:
    """The usage in a non-streamed answer, or None when it carries none.

    ``route`` is accepted for the daemon's convenience and future per-route rules; the
    field names already say which convention a body follows.  A transcription billed by
    duration (``{"type": "duration", "seconds": ...}``) has no tokens, so None.
    """
    usage = body.get("usage")
    if type(usage) is not dict and not isinstance(usage, Mapping):  # dict: no ABC check
        return None
    if route == "messages":
        return usage_from_messages(usage)
    return usage_from_mapping(usage)


def usage_from_messages(usage: Mapping[str, Any]) -> Usage | None:
    """An Anthropic ``usage`` object in waystone's terms, None if it is junk or empty.

    Anthropic's ``input_tokens`` are only the uncached ones: the input recorded is those
    plus the cache reads (``cache_read_input_tokens``, the cached tokens) and the cache
    writes (``cache_creation_input_tokens``, or the sum of its ``cache_creation`` split
    by lifetime when only that is given).
    """
    if "input_tokens" not in usage and "output_tokens" not in usage:
        return None
    uncached = _count(usage, "input_tokens")
    output_tokens = _count(usage, "output_tokens")
    if uncached is None or output_tokens is None:
        return None
    reads = _int(usage, "cache_read_input_tokens")
    split = _details(usage, "cache_creation")
    writes_1h = _int(split, "ephemeral_1h_input_tokens")
    writes = _int(usage, "cache_creation_input_tokens") or (
        _int(split, "ephemeral_5m_input_tokens") + writes_1h
    )
    return Usage(
        input_tokens=uncached + reads + writes,
        output_tokens=output_tokens,
        cached_tokens=reads,
        cache_write_tokens=writes,
        cache_write_1h_tokens=min(writes_1h, writes),
    )


def usage_from_mapping(usage: Mapping[str, Any]) -> Usage | None:
    """A ``usage`` object in either spelling; None if it counts no tokens at all, or if an
    input or output count is junk (not a non-negative integer: a string, a float, a bool,
    a negative number), which is no count to charge by.  Junk in the details counts 0."""
    if not (
        "prompt_tokens" in usage
        or "input_tokens" in usage
        or "completion_tokens" in usage
        or "output_tokens" in usage
    ):
        return None
    input_tokens = _count(usage, "prompt_tokens", "input_tokens")
    output_tokens = _count(usage, "completion_tokens", "output_tokens")
    if input_tokens is None or output_tokens is None:
        return None
    input_details = _details(
        usage, "prompt_tokens_details", "input_tokens_details", "input_token_details"
    )
    output_details = _details(usage, "completion_tokens_details", "output_tokens_details")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=_int(input_details, "cached_tokens"),
        reasoning_tokens=_int(output_details, "reasoning_tokens"),
        audio_tokens=_int(input_details, "audio_tokens"),
    )


def _details(usage: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        value = usage.get(key)
        if value is not None and (type(value) is dict or isinstance(value, Mapping)):
            return value
    return _NO_DETAILS


_NO_DETAILS: Mapping[str, Any] = {}


def _count(mapping: Mapping[str, Any], *keys: str) -> int | None:
    """The first of ``keys`` present and not null: its count, or None when it is junk;
    0 when none is present."""
    for key in keys:
        value = mapping.get(key)
        if value is None:
            continue
        if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
            return value if value >= 0 else None
        return None
    return 0


def _int(mapping: Mapping[str, Any], *keys: str) -> int:
    """The first key holding a non-negative integer; a provider's null or junk counts 0."""
    for key in keys:
        value = mapping.get(key)
        if type(value) is int:  # the usual case, checked first: a bool is no count
            if value >= 0:
                return value
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


class StreamTally:
    """What one streamed answer said, fed the JSON ``data`` of every SSE event.

    ``usage`` is the last usage seen: the usage-only chunk of a chat or completions stream
    (or usage on any chunk, as some compatible providers send it), or the ``response`` of
    ``response.completed`` / ``response.incomplete``.  ``finish_reasons`` uses chat's words
    for every route; for the Responses API "completed" is "stop", an incomplete answer is
    its reason mapped ("max_output_tokens" is "length") and a failed one is "error".

    ``text_limit`` bounds the text kept (in characters; None: all of it), for a reader
    that needs only the estimate: the characters are counted all the same.
    """

    def __init__(self, route: str, text_limit: int | None = None) -> None:
        self.route = route
        self.usage: Usage | None = None
        self.finish_reasons: list[str] = []
        self.response_model: str | None = None
        self._text: list[str] = []
        self._text_room = text_limit
        self._text_chars = 0  # all of the text, kept or not
        self._other_chars = 0  # tool-call arguments and refusals: output, but not text

    @property
    def text(self) -> str:
        return "".join(self._text)

    @staticmethod
    def is_usage_only_chunk(data: Mapping[str, Any]) -> bool:
        """The chunk ``stream_options.include_usage`` adds: no choices, a usage object."""
        choices = data.get("choices")
        return isinstance(choices, list) and not choices and isinstance(data.get("usage"), Mapping)

    def feed(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            self._feed_response_event(kind, data)
            return
        model = data.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        for choice in data.get("choices") or ():
            if isinstance(choice, Mapping):
                self._feed_choice(choice)
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            self.usage = usage_from_mapping(usage) or self.usage

    def estimate_output_tokens(self) -> int:
        """Output tokens by the heuristic: the text plus tool-call arguments and refusals."""
        return -(-(self._text_chars + self._other_chars) // 4)

    def cut_usage(self, output_estimate: int) -> Usage | None:
        """The usage of a stream that ended without it, as far as it is known: nothing,
        since these streams report all of it at their end."""
        return None

    def _feed_choice(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            self._add_text(delta.get("content"))
            refusal = delta.get("refusal")
            if isinstance(refusal, str):
                self._other_chars += len(refusal)
            for call in delta.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping) and isinstance(function.get("arguments"), str):
                    self._other_chars += len(function["arguments"])
        else:
            self._add_text(choice.get("text"))  # a completions chunk
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            self.finish_reasons.append(reason)

    def _feed_response_event(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "response.output_text.delta":
            self._add_text(data.get("delta"))
        elif kind == "response.function_call_arguments.delta":
            delta = data.get("delta")
            self._other_chars += len(delta) if isinstance(delta, str) else 0
        response = data.get("response")
        if not isinstance(response, Mapping):
            return
        model = response.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.finish_reasons.append(_response_finish(kind, response))
            usage = response.get("usage")
            if isinstance(usage, Mapping):
                self.usage = usage_from_mapping(usage) or self.usage

    def _add_text(self, text: Any) -> None:
        if not isinstance(text, str) or not text:
            return
        self._text_chars += len(text)
        room = self._text_room
        if room is None:
            self._text.append(text)
        elif room > 0:
            self._text.append(text[:room])
            self._text_room = room - len(text)


def _response_finish(kind: str, response: Mapping[str, Any]) -> str:
    if kind == "response.completed":
        return "stop"
    if kind == "response.failed":
        return "error"
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
        str(reason), "length"
    )


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: about four characters a token for English; 0 only when empty."""
    return -(-len(text) // 4)


def estimate_input_tokens(route: str, body: Mapping[str, Any]) -> int:
    """The input tokens a request will likely use, by the heuristic in the module docstring.

    chat/completions: 3 + sum over messages of (3 + the message's tokens), where a
    message's tokens are those of its text content (a string, or the ``text`` of its
    parts; 85 per image part); plus the tokens of the JSON of ``tools`` if given.
    completions, embeddings, moderations: the tokens of each input string summed (a list
    of token ids counts its length).  responses: the tokens of ``instructions`` plus those
    of ``input`` (a string, or items whose content is a string or parts).  Other routes: 0.
    """
    if route == "chat/completions":
        messages = body.get("messages")
        total = REPLY_OVERHEAD
        for message in messages if isinstance(messages, list) else ():
            content = message.get("content") if isinstance(message, Mapping) else None
            total += MESSAGE_OVERHEAD + _content_tokens(content)
        tools = body.get("tools")
        if tools:
            total += estimate_tokens(json.dumps(tools, separators=(",", ":")))
        return total
    if route == "completions":
        return _inputs_tokens(body.get("prompt"))
    if route in ("embeddings", "moderations"):
        return _inputs_tokens(body.get("input"))
    if route in MESSAGES_ROUTES:
        return _messages_input_tokens(body)
    if route == "responses":
        instructions = body.get("instructions")
        extra = estimate_tokens(instructions) if isinstance(instructions, str) else 0
        return extra + _responses_input_tokens(body.get("input"))
    return 0


def _messages_input_tokens(body: Mapping[str, Any]) -> int:
    """Anthropic's Messages API: counted as chat is, with the ``system`` prompt (a string
    or text blocks) as one more message and ``tools`` as their JSON."""
    system = body.get("system")
    total = REPLY_OVERHEAD
    if system:
        total += MESSAGE_OVERHEAD + _content_tokens(system)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, Mapping) else None
        total += MESSAGE_OVERHEAD + _content_tokens(content)
    tools = body.get("tools")
    if tools:
        total += estimate_tokens(json.dumps(tools, separators=(",", ":")))
    return total


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            total += estimate_tokens(part["text"])
        elif part.get("type") in ("image_url", "input_image", "image"):
            total += IMAGE_TOKENS
    return total


def _inputs_tokens(value: Any) -> int:
    """A string, a list of strings, a list of token ids, or a list of token-id lists."""
    if isinstance(value, str):
        return estimate_tokens(value)
    if not isinstance(value, list):
        return 0
    if value and all(isinstance(v, int) for v in value):
        return len(value)
    total = 0
    for item in value:
        if isinstance(item, str):
            total += estimate_tokens(item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, Mapping):
            total += _content_tokens([item])
    return total


def _responses_input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return estimate_tokens(value)
    if not isinstance(value, list):
        return 0
    total = 0
    for item in value:
        if isinstance(item, Mapping):
            total += _content_tokens(item.get("content"))
    return total


def last_user_text(route: str, body: Mapping[str, Any]) -> str:
    """The text of the last user turn (chat, responses) or the prompt (completions)."""
    if route == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = next((p for p in reversed(prompt) if isinstance(p, str)), "")
        return prompt if isinstance(prompt, str) else ""
    key = "input" if route == "responses" else "messages"
    items = body.get(key)
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, Mapping) and item.get("role") == "user":
            return _content_text(item.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""
