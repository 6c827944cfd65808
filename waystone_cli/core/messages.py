"""Anthropic's Messages API as waystone reads it: a streamed answer's tally and the text
of an answer.

A stream (``message_start``, then per content block ``content_block_start`` /
``content_block_delta`` / ``content_block_stop``, then ``message_delta`` and
``message_stop``) reports its usage twice: the input side (uncached input, cache reads,
cache writes) in ``message_start``'s message, and the output in ``message_delta``, whose
counts are cumulative: each one repeats the total so far.  So the input comes from
``message_start``, the output from the last ``message_delta``, and deltas are never
added up.  The tally may be fed the events out of order (the lazy reader of
``daemon.request.stream`` reads a finished stream from its end): since the counts are
cumulative, the last one is the largest, and the largest is what is kept.

A stream with no ``message_delta`` (cut short) has no usage: its ``cut_usage`` is the
input side ``message_start`` reported and the output estimated from the text streamed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from waystone_cli.core.usage import MESSAGES_ROUTES, StreamTally, Usage, usage_from_messages

# Anthropic's stop reasons in chat's words, as ``StreamTally.finish_reasons`` keeps them.
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class MessagesTally:
    """``StreamTally``'s interface for a Messages stream (see the module docstring)."""

    def __init__(self, route: str, text_limit: int | None = None) -> None:
        self.route = route
        self.finish_reasons: list[str] = []
        self.response_model: str | None = None
        self._input: Usage | None = None
        self._output: int | None = None
        self._text: list[str] = []
        self._text_room = text_limit
        self._text_chars = 0
        self._other_chars = 0  # tool-input JSON and thinking: output, but not text

    @property
    def usage(self) -> Usage | None:
        if self._input is None or self._output is None:
            return None
        return self._input._replace(output_tokens=self._output)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def estimate_output_tokens(self) -> int:
        return -(-(self._text_chars + self._other_chars) // 4)

    def cut_usage(self, output_estimate: int) -> Usage | None:
        """A stream cut before its ``message_delta``: the input side that
        ``message_start`` reported, with ``output_estimate`` output tokens."""
        if self._input is None:
            return None
        return self._input._replace(output_tokens=output_estimate)

    def feed(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "content_block_delta":
            self._feed_delta(data.get("delta"))
        elif kind == "message_start":
            message = data.get("message")
            if isinstance(message, Mapping):
                self._feed_start(message)
        elif kind == "message_delta":
            self._feed_end(data)

    def _feed_start(self, message: Mapping[str, Any]) -> None:
        model = message.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        usage = message.get("usage")
        if isinstance(usage, Mapping):
            self._input = usage_from_messages({**usage, "output_tokens": 0})

    def _feed_end(self, data: Mapping[str, Any]) -> None:
        usage = data.get("usage")
        if isinstance(usage, Mapping) and "output_tokens" in usage:
            counted = usage_from_messages(usage)
            if counted is not None:
                self._output = max(self._output or 0, counted.output_tokens)
        delta = data.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
        if isinstance(reason, str):
            self.finish_reasons.append(_FINISH.get(reason, reason))

    def _feed_delta(self, delta: Any) -> None:
        if not isinstance(delta, Mapping):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            self._add_text(delta.get("text"))
            return
        for key in ("partial_json", "thinking"):
            value = delta.get(key)
            if isinstance(value, str):
                self._other_chars += len(value)

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


Tally = StreamTally | MessagesTally


def cut_notice(route: str, message: str) -> str | None:
    """The JSON of the ``error`` event that ends a Messages stream the provider cut, as
    Anthropic ends a stream that fails midway (its SDK then raises); None on routes whose
    streams have no such event."""
    if route not in MESSAGES_ROUTES:
        return None
    return json.dumps({"type": "error", "error": {"type": "api_error", "message": message}})


def new_tally(route: str, text_limit: int | None = None) -> Tally:
    """The tally that reads ``route``'s streams."""
    if route in MESSAGES_ROUTES:
        return MessagesTally(route, text_limit)
    return StreamTally(route, text_limit)


def output_text(body: Mapping[str, Any]) -> str:
    """The text blocks of a Messages answer, joined (for output checks and datasets)."""
    content = body.get("content")
    blocks = content if isinstance(content, list) else ()
    return "".join(
        block["text"]
        for block in blocks
        if isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
