"""The mock provider's Messages API: Anthropic's shapes, usage split by cache class."""

from __future__ import annotations

import json
from typing import Any

from daemon.providers.mock import FILLER, mock_error, mock_json, mock_stream
from waystone_cli.core.messages import MessagesTally
from waystone_cli.core.sse import SSEParser
from waystone_cli.core.usage import Usage, usage_from_body

QUESTION = "What is the capital of France and why is it Paris today?"
BODY = {"model": "m", "max_tokens": 1000, "system": "Be brief.", "messages": [
    {"role": "user", "content": QUESTION}
]}  # fmt: skip
REPLY = "This is a mock answer to: What is the capital of France and why. " + FILLER
REPLY_TOKENS = 53  # ceil(210 / 4)
INPUT_TOKENS = 26  # 3 + (3 + ceil(9 / 4)) + (3 + ceil(56 / 4)), as chat counts it


def events(frames: list[bytes]) -> list[tuple[str | None, Any]]:
    parser = SSEParser()
    out = [(e.event, json.loads(e.data)) for frame in frames for e in parser.feed(frame)]
    assert parser.flush() == []
    return out


def test_a_message_answers_the_reply_with_anthropics_usage() -> None:
    status, body = mock_json("messages", BODY, "mock-small")
    assert status == 200
    assert (body["type"], body["content"], body["stop_reason"]) == (
        "message",
        [{"type": "text", "text": REPLY}],
        "end_turn",
    )
    assert usage_from_body("messages", body) == Usage(INPUT_TOKENS, REPLY_TOKENS)


def test_a_cache_model_reads_half_of_the_input_and_writes_a_quarter() -> None:
    _, body = mock_json("messages", BODY, "mock-cache")
    usage = body["usage"]
    # 26 input tokens: 13 read, 6 written (3 for five minutes, 3 for an hour), 7 uncached.
    assert (
        usage["input_tokens"],
        usage["cache_read_input_tokens"],
        usage["cache_creation_input_tokens"],
        usage["cache_creation"],
    ) == (7, 13, 6, {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 3})
    assert usage_from_body("messages", body) == Usage(
        26, REPLY_TOKENS, cached_tokens=13, cache_write_tokens=6, cache_write_1h_tokens=3
    )


def test_a_stream_sends_anthropics_events_and_the_same_usage() -> None:
    streamed = events(list(mock_stream("messages", BODY, "mock-cache")))
    kinds = [kind for kind, _ in streamed]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    tally = MessagesTally("messages")
    for _, data in streamed:
        tally.feed(data)
    assert tally.text == REPLY
    assert tally.usage == usage_from_body("messages", mock_json("messages", BODY, "mock-cache")[1])


def test_a_cut_model_stops_before_message_delta() -> None:
    kinds = [kind for kind, _ in events(list(mock_stream("messages", BODY, "mock-cut")))]
    assert kinds[-1] == "content_block_delta"
    assert "message_delta" not in kinds


def test_count_tokens_answers_the_input_estimate() -> None:
    assert mock_json("messages/count_tokens", BODY, "m") == (200, {"input_tokens": INPUT_TOKENS})


def test_errors_on_the_messages_routes_are_in_anthropics_envelope() -> None:
    assert mock_error("messages", {"model": "x"}, "mock-small") == (
        400,
        {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "messages: Field required"},
        },
    )
    status, body = mock_error("messages", BODY, "mock-fail") or (0, {})
    assert (status, body["type"], body["error"]["type"]) == (500, "error", "api_error")
