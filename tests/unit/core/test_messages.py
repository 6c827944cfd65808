"""A Messages stream's tally: input from ``message_start``, output from the last
``message_delta`` (cumulative counts, never added up), in either reading order."""

from __future__ import annotations

import json
from typing import Any

import pytest

from waystone_cli.core.messages import MessagesTally, cut_notice, new_tally, output_text
from waystone_cli.core.usage import StreamTally, Usage

START = {
    "type": "message_start",
    "message": {
        "model": "claude-test",
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 30,
            "cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20},
            "output_tokens": 1,
        },
    },
}
EXPECTED = Usage(
    input_tokens=60,
    output_tokens=7,
    cached_tokens=20,
    cache_write_tokens=30,
    cache_write_1h_tokens=20,
)


def text(piece: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": piece},
    }


def delta(output_tokens: int, stop: str | None = None) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop},
        "usage": {"output_tokens": output_tokens},
    }


EVENTS = [START, text("Hello"), text(" there"), delta(3), delta(5), delta(7, "end_turn")]


@pytest.mark.parametrize("order", ["as sent", "from the end"])
def test_input_comes_from_message_start_and_output_from_the_last_delta(order: str) -> None:
    tally = MessagesTally("messages")
    for event in EVENTS if order == "as sent" else reversed(EVENTS):
        tally.feed(event)
    assert tally.usage == EXPECTED
    assert tally.finish_reasons == ["stop"]
    assert tally.response_model == "claude-test"


def test_the_text_is_the_text_deltas_and_tool_input_counts_toward_the_estimate() -> None:
    tally = MessagesTally("messages")
    tally.feed(text("Hello"))
    tally.feed(
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{}"}}
    )
    assert (tally.text, tally.estimate_output_tokens()) == ("Hello", 2)


def test_a_stream_without_message_delta_has_no_usage_but_its_input_side() -> None:
    tally = MessagesTally("messages")
    tally.feed(START)
    tally.feed(text("Hello"))
    assert tally.usage is None
    assert tally.cut_usage(2) == EXPECTED._replace(output_tokens=2)
    assert MessagesTally("messages").cut_usage(2) is None


def test_the_kept_text_is_bounded_but_all_of_it_is_counted() -> None:
    tally = MessagesTally("messages", text_limit=4)
    tally.feed(text("Hello"))
    tally.feed(text(" there"))
    assert (tally.text, tally.estimate_output_tokens()) == ("Hell", 3)


def test_each_route_gets_its_tally() -> None:
    assert isinstance(new_tally("messages"), MessagesTally)
    assert isinstance(new_tally("chat/completions"), StreamTally)


def test_the_output_text_joins_the_text_blocks_only() -> None:
    body = {
        "type": "message",
        "content": [
            {"type": "thinking", "thinking": "hmm"},
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "input": {}},
            {"type": "text", "text": " there"},
        ],
    }
    assert output_text(body) == "Hi there"
    assert output_text({"content": None}) == ""


def test_a_cut_messages_stream_ends_with_an_error_event_and_chat_with_none() -> None:
    notice = cut_notice("messages", 'provider "anth" cut the response')
    assert notice is not None
    assert json.loads(notice) == {
        "type": "error",
        "error": {"type": "api_error", "message": 'provider "anth" cut the response'},
    }
    assert cut_notice("chat/completions", "cut") is None
