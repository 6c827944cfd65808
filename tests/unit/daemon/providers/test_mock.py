from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from daemon.providers.mock import FILLER, mock_error, mock_json, mock_stream
from waystone_cli.core.errors import UpstreamError
from waystone_cli.core.sse import SSEParser
from waystone_cli.core.usage import StreamTally, Usage, usage_from_body

QUESTION = "What is the capital of France and why is it Paris today?"
CHAT = {
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
}
# The first 8 words of the question, then the filler.
REPLY = "This is a mock answer to: What is the capital of France and why. " + FILLER
# len(REPLY) = 65 + 145 = 210 characters -> ceil(210 / 4) = 53 tokens
REPLY_TOKENS = 53
# 3 + (3 + ceil(9 / 4) = 3) + (3 + ceil(56 / 4) = 14)
CHAT_INPUT_TOKENS = 26


def parse(frames: list[bytes]) -> list[Any]:
    """The events of a stream; JSON data decoded, [DONE] kept as the string."""
    parser = SSEParser()
    out: list[Any] = []
    for frame in frames:
        for event in parser.feed(frame):
            out.append(
                event.data
                if event.data.strip() == "[DONE]"
                else (event.event, json.loads(event.data))
            )
    assert parser.flush() == []
    return out


def tally(route: str, events: list[Any]) -> StreamTally:
    result = StreamTally(route)
    for event in events:
        if event != "[DONE]":
            result.feed(event[1])
    return result


def test_the_reply_formula_is_what_the_docstring_says() -> None:
    assert len(REPLY) == 210
    assert len(FILLER) == 145


def test_chat_answers_with_the_predicted_text_and_usage() -> None:
    status, body = mock_json("chat/completions", CHAT, "mock-small")
    assert status == 200
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": REPLY, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert (body["object"], body["model"]) == ("chat.completion", "mock-small")
    assert usage_from_body("chat/completions", body) == Usage(CHAT_INPUT_TOKENS, REPLY_TOKENS)
    assert body["usage"]["total_tokens"] == CHAT_INPUT_TOKENS + REPLY_TOKENS
    assert mock_json("chat/completions", CHAT, "mock-small") == (status, body)


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_chat_honours_the_token_cap(key: str) -> None:
    _, body = mock_json("chat/completions", {**CHAT, key: 5}, "mock-small")
    assert body["choices"][0]["message"]["content"] == REPLY[:20]
    assert body["choices"][0]["finish_reason"] == "length"
    assert usage_from_body("chat/completions", body) == Usage(CHAT_INPUT_TOKENS, 5)


def test_model_names_ask_for_cached_and_reasoning_tokens() -> None:
    _, body = mock_json("chat/completions", CHAT, "mock-cache-reason")
    assert usage_from_body("chat/completions", body) == Usage(
        CHAT_INPUT_TOKENS, REPLY_TOKENS + 16, cached_tokens=13, reasoning_tokens=16
    )


def test_chat_stream_with_usage_ends_with_a_usage_only_chunk_then_done() -> None:
    events = parse(
        list(
            mock_stream(
                "chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, "m"
            )
        )
    )
    chunks = [e[1] for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert StreamTally.is_usage_only_chunk(chunks[-1])
    assert all(c["usage"] is None for c in chunks[:-1])
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert contents[:2] == ["This is a ", "mock answer to: "]
    assert "".join(contents) == REPLY
    result = tally("chat/completions", events)
    assert (result.text, result.usage, result.finish_reasons) == (
        REPLY,
        Usage(CHAT_INPUT_TOKENS, REPLY_TOKENS),
        ["stop"],
    )


def test_chat_stream_without_include_usage_sends_no_usage() -> None:
    events = parse(list(mock_stream("chat/completions", CHAT, "m")))
    assert events[-1] == "[DONE]"
    assert all("usage" not in e[1] for e in events[:-1])
    assert tally("chat/completions", events).usage is None


def test_a_cut_model_stops_mid_stream_without_finish_usage_or_done() -> None:
    body = {**CHAT, "stream_options": {"include_usage": True}}
    events = parse(list(mock_stream("chat/completions", body, "mock-cut")))
    result = tally("chat/completions", events)
    assert "[DONE]" not in events
    assert (result.usage, result.finish_reasons) == (None, [])
    assert REPLY.startswith(result.text) and 0 < len(result.text) < len(REPLY)


def test_completions_stream_and_json_agree() -> None:
    body = {
        "prompt": "Once upon a time",
        "max_tokens": 4,
        "stream_options": {"include_usage": True},
    }
    _, full = mock_json("completions", body, "m")
    assert full["choices"][0]["text"] == "This is a mock a"
    assert full["choices"][0]["finish_reason"] == "length"
    assert full["usage"] == {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8}
    events = parse(list(mock_stream("completions", body, "m")))
    result = tally("completions", events)
    assert (result.text, result.usage, result.finish_reasons) == (
        "This is a mock a",
        Usage(4, 4),
        ["length"],
    )
    assert events[-1] == "[DONE]"


def test_responses_json_is_a_response_object_with_usage() -> None:
    _, body = mock_json("responses", {"input": QUESTION, "instructions": "Be brief."}, "mock-small")
    assert (body["object"], body["status"], body["incomplete_details"]) == (
        "response",
        "completed",
        None,
    )
    assert body["output"][0]["content"][0]["text"] == REPLY
    # 14 + ceil(9 / 4) = 3 input tokens
    assert body["usage"] == {
        "input_tokens": 17,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": REPLY_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 17 + REPLY_TOKENS,
    }


def test_responses_stream_events_end_with_completed_and_its_usage() -> None:
    events = parse(list(mock_stream("responses", {"input": QUESTION}, "mock-small")))
    kinds = [e[0] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e[1]["sequence_number"] for e in events] == list(range(len(events)))
    assert all(e[0] == e[1]["type"] for e in events)
    result = tally("responses", events)
    assert (result.text, result.usage, result.finish_reasons, result.response_model) == (
        REPLY,
        Usage(14, REPLY_TOKENS),
        ["stop"],
        "mock-small",
    )


def test_responses_cap_makes_the_answer_incomplete() -> None:
    body = {
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "max_output_tokens": 3,
    }
    _, full = mock_json("responses", body, "m")
    assert (full["status"], full["incomplete_details"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
    )
    events = parse(list(mock_stream("responses", body, "m")))
    result = tally("responses", events)
    assert events[-1][0] == "response.incomplete"
    assert (result.text, result.usage, result.finish_reasons) == (
        "This is a mo",
        Usage(1, 3),
        ["length"],
    )


def test_embeddings_are_deterministic_unit_vectors_in_either_encoding() -> None:
    body = {"input": ["hello", "world!!!"]}
    status, floats = mock_json("embeddings", body, "mock-embed")
    assert status == 200
    assert floats["usage"] == {"prompt_tokens": 4, "total_tokens": 4}  # ceil(5/4) + ceil(8/4)
    vectors = [d["embedding"] for d in floats["data"]]
    assert [len(v) for v in vectors] == [8, 8]
    assert vectors[0] != vectors[1]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-5 for v in vectors)
    _, b64 = mock_json("embeddings", {**body, "encoding_format": "base64"}, "mock-embed")
    decoded = list(struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"])))
    assert decoded == pytest.approx(vectors[0], abs=1e-6)
    _, sized = mock_json("embeddings", {"input": "x", "dimensions": 3}, "mock-embed")
    assert len(sized["data"][0]["embedding"]) == 3


def test_moderations_flag_the_word_forbidden() -> None:
    _, body = mock_json(
        "moderations", {"input": ["This is FORBIDDEN.", "all fine", "unforbiddenly"]}, "mod"
    )
    assert [r["flagged"] for r in body["results"]] == [True, False, False]
    assert [c for c, on in body["results"][0]["categories"].items() if on] == ["illicit"]
    assert usage_from_body("moderations", body) is None


def test_transcriptions_bill_audio_tokens_by_file_size() -> None:
    status, body = mock_json(
        "audio/transcriptions", {"model": "whisper-mock", "file": b"x" * 5300}, "whisper-mock"
    )
    assert status == 200
    assert body["text"] == "This is a mock transcription of 5300 bytes of audio."
    # 5 audio tokens; ceil(52 / 4) = 13 output tokens
    assert usage_from_body("audio/transcriptions", body) == Usage(5, 13, audio_tokens=5)


def test_models_lists_the_model() -> None:
    assert mock_json("models", {}, "mock-small") == (
        200,
        {
            "object": "list",
            "data": [{"id": "mock-small", "object": "model", "created": 0, "owned_by": "mock"}],
        },
    )


def test_a_fail_model_answers_500_with_an_openai_error_envelope() -> None:
    expected = (
        500,
        {
            "error": {
                "message": 'mock provider: model "mock-fail" fails on purpose (its name contains "fail")',
                "type": "server_error",
                "param": None,
                "code": "mock_failure",
            }
        },
    )
    assert mock_json("chat/completions", CHAT, "mock-fail") == expected
    assert mock_error("chat/completions", CHAT, "mock-fail") == expected
    with pytest.raises(UpstreamError, match="fails on purpose"):
        mock_stream("chat/completions", CHAT, "mock-fail")


def test_a_missing_required_field_is_a_400() -> None:
    assert mock_json("chat/completions", {}, "m") == (
        400,
        {
            "error": {
                "message": "Missing required parameter: 'messages'.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": None,
            }
        },
    )
    assert mock_error("chat/completions", CHAT, "m") is None
