from __future__ import annotations

from typing import Any

import pytest

from waystone_cli.core.usage import (
    StreamTally,
    Usage,
    estimate_input_tokens,
    estimate_tokens,
    usage_from_body,
)


@pytest.mark.parametrize(
    ("route", "body", "expected"),
    [
        (
            "chat/completions",
            {
                "usage": {
                    "prompt_tokens": 1200,
                    "completion_tokens": 300,
                    "total_tokens": 1500,
                    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 7},
                    "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0},
                }
            },
            Usage(1200, 300, cached_tokens=1024, reasoning_tokens=256, audio_tokens=7),
        ),
        (
            "completions",
            {"usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}},
            Usage(5, 9),
        ),
        ("embeddings", {"usage": {"prompt_tokens": 8, "total_tokens": 8}}, Usage(8, 0)),
        (
            "responses",
            {
                "usage": {
                    "input_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 40},
                    "output_tokens": 60,
                    "output_tokens_details": {"reasoning_tokens": 20},
                    "total_tokens": 160,
                }
            },
            Usage(100, 60, cached_tokens=40, reasoning_tokens=20),
        ),
        (
            "audio/transcriptions",
            {
                "text": "hi",
                "usage": {
                    "type": "tokens",
                    "input_tokens": 14,
                    "input_token_details": {"audio_tokens": 14, "text_tokens": 0},
                    "output_tokens": 3,
                    "total_tokens": 17,
                },
            },
            Usage(14, 3, audio_tokens=14),
        ),
        ("audio/transcriptions", {"text": "hi", "usage": {"type": "duration", "seconds": 9}}, None),
        ("audio/transcriptions", {"text": "hi"}, None),
        ("moderations", {"id": "modr-1", "results": []}, None),
        ("chat/completions", {"usage": None}, None),
        (
            "chat/completions",
            {
                "usage": {
                    "prompt_tokens": None,
                    "completion_tokens": 4,
                    "prompt_tokens_details": None,
                }
            },
            Usage(0, 4),
        ),
    ],
)
def test_usage_from_body_reads_every_route(
    route: str, body: dict[str, Any], expected: Usage | None
) -> None:
    assert usage_from_body(route, body) == expected


def chat_chunk(
    content: str | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def test_stream_tally_reads_a_chat_stream_with_its_usage_only_chunk() -> None:
    tally = StreamTally("chat/completions")
    usage_chunk = {
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    for data in (
        chat_chunk("", usage=None),
        chat_chunk("Hello", usage=None),
        chat_chunk(" world", usage=None),
        chat_chunk(None, "stop", usage=None),
        usage_chunk,
    ):
        tally.feed(data)
    assert (tally.text, tally.finish_reasons, tally.response_model, tally.usage) == (
        "Hello world",
        ["stop"],
        "gpt-4o-2024-08-06",
        Usage(12, 3),
    )
    assert StreamTally.is_usage_only_chunk(usage_chunk)
    assert not StreamTally.is_usage_only_chunk(chat_chunk("x", usage=None))
    assert not StreamTally.is_usage_only_chunk({"choices": [], "usage": None})


def test_stream_tally_without_usage_estimates_text_and_tool_arguments() -> None:
    tally = StreamTally("chat/completions")
    tally.feed(chat_chunk("12345678"))  # 8 characters
    tally.feed(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]},
                }
            ]
        }
    )  # 7 characters
    assert tally.usage is None
    assert tally.text == "12345678"
    assert tally.estimate_output_tokens() == 4  # ceil(15 / 4)


def test_stream_tally_reads_a_completions_stream() -> None:
    tally = StreamTally("completions")
    for data in (
        {
            "object": "text_completion",
            "model": "m",
            "choices": [{"index": 0, "text": "a b ", "finish_reason": None}],
        },
        {
            "object": "text_completion",
            "model": "m",
            "choices": [{"index": 0, "text": "c", "finish_reason": "length"}],
        },
        {
            "object": "text_completion",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2},
        },
    ):
        tally.feed(data)
    assert (tally.text, tally.finish_reasons, tally.usage) == ("a b c", ["length"], Usage(2, 2))


@pytest.mark.parametrize(
    ("final", "reason"),
    [
        (
            {"type": "response.completed", "response": {"model": "o3", "status": "completed"}},
            "stop",
        ),
        (
            {
                "type": "response.incomplete",
                "response": {"model": "o3", "incomplete_details": {"reason": "max_output_tokens"}},
            },
            "length",
        ),
        ({"type": "response.failed", "response": {"model": "o3", "usage": None}}, "error"),
    ],
)
def test_stream_tally_reads_responses_events(final: dict[str, Any], reason: str) -> None:
    tally = StreamTally("responses")
    usage = {
        "input_tokens": 30,
        "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 50,
        "output_tokens_details": {"reasoning_tokens": 45},
    }
    final["response"].setdefault("usage", usage)
    for data in (
        {"type": "response.created", "response": {"model": "o3-2025-04-16", "usage": None}},
        {"type": "response.output_text.delta", "delta": "Hi "},
        {"type": "response.output_text.delta", "delta": "there"},
        {"type": "response.output_text.done", "text": "Hi there"},
        final,
    ):
        tally.feed(data)
    expected_usage = (
        None
        if final["type"] == "response.failed"
        else Usage(30, 50, cached_tokens=10, reasoning_tokens=45)
    )
    assert (tally.text, tally.finish_reasons, tally.response_model, tally.usage) == (
        "Hi there",
        [reason],
        "o3",
        expected_usage,
    )


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100)]
)
def test_estimate_tokens_is_a_quarter_of_the_characters_rounded_up(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@pytest.mark.parametrize(
    ("route", "body", "tokens"),
    [
        # 3 (reply) + (3 + ceil(9/4)=3) + (3 + ceil(12/4)=3) = 15
        (
            "chat/completions",
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hello there!"},
                ]
            },
            15,
        ),
        # 3 + (3 + 1 text token + 85 image tokens)
        (
            "chat/completions",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "hi"},
                            {"type": "image_url", "image_url": {}},
                        ],
                    }
                ]
            },
            92,
        ),
        # 3 + (3 + 1) + ceil(len('[{"type":"function"}]') = 21 / 4) = 6
        (
            "chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
            13,
        ),
        ("completions", {"prompt": "Once upon a time"}, 4),
        ("completions", {"prompt": [1, 2, 3]}, 3),
        ("embeddings", {"input": ["abcd", "abcdefgh"]}, 3),
        ("embeddings", {"input": [[1, 2], [3]]}, 3),
        ("moderations", {"input": "forbidden"}, 3),
        ("responses", {"instructions": "Be brief.", "input": "Hello there!"}, 6),
        (
            "responses",
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "Hello there!"}]}
                ]
            },
            3,
        ),
        ("audio/transcriptions", {"file": b"xxxx"}, 0),
        ("chat/completions", {}, 3),
    ],
)
def test_estimate_input_tokens_by_route(route: str, body: dict[str, Any], tokens: int) -> None:
    assert estimate_input_tokens(route, body) == tokens


# --- Anthropic's Messages API --------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {
                "input_tokens": 10,
                "cache_read_input_tokens": 20,
                "cache_creation_input_tokens": 30,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 10,
                    "ephemeral_1h_input_tokens": 20,
                },
                "output_tokens": 7,
            },
            Usage(60, 7, cached_tokens=20, cache_write_tokens=30, cache_write_1h_tokens=20),
        ),
        (  # only the split: its sum is the cache writes
            {
                "input_tokens": 5,
                "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
                "output_tokens": 1,
            },
            Usage(15, 1, cache_write_tokens=10, cache_write_1h_tokens=6),
        ),
        (  # nulls, as some responses carry: no cache at all
            {
                "input_tokens": 5,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
                "output_tokens": 2,
            },
            Usage(5, 2),
        ),
    ],
)
def test_messages_input_is_uncached_plus_cache_reads_plus_cache_writes(
    usage: dict[str, Any], expected: Usage
) -> None:
    assert usage_from_body("messages", {"usage": usage}) == expected


@pytest.mark.parametrize(
    "usage", [{}, {"input_tokens": "10", "output_tokens": 1}, {"input_tokens": -1}]
)
def test_messages_usage_that_is_junk_or_empty_is_none(usage: dict[str, Any]) -> None:
    assert usage_from_body("messages", {"usage": usage}) is None


def test_a_messages_request_is_estimated_with_its_system_prompt() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief"}],  # 2 tokens
        "messages": [{"role": "user", "content": "Say hello"}],  # 3 tokens
    }
    assert estimate_input_tokens("messages", body) == 3 + (3 + 2) + (3 + 3)
    assert estimate_input_tokens("messages/count_tokens", body) == 14
