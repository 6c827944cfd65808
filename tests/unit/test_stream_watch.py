"""Reading a relayed stream on the side (``daemon.stream.StreamWatch``): only events that
may carry usage are decoded at once, and a wrong guess never loses usage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from daemon import stream
from daemon.stream import StreamWatch
from waystone_cli.core.usage import Usage

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def sse(*events: Any) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def chunk(content: str, **extra: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"delta": {"content": content}}]} | (
        extra
    )


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The data of every event the watch decodes, in order."""
    seen: list[str] = []
    real = stream._decode

    def counting(data: str) -> dict[str, Any] | None:
        seen.append(data)
        return real(data)

    monkeypatch.setattr(stream, "_decode", counting)
    return seen


def watch(data: bytes, route: str = "chat/completions") -> StreamWatch:
    w = StreamWatch(route, drop_usage=False, full=False, trace=None)
    assert w.feed(data) == data  # passed through as it came
    return w


def test_null_usage_chunks_wait_and_only_the_usage_chunk_is_decoded(decoded: list[str]) -> None:
    # OpenAI's chunks carry "usage": null when the request asked for usage.
    body = sse(chunk("Hel", usage=None), chunk("lo", usage=None), {"choices": [], "usage": USAGE})
    w = watch(body + b"data: [DONE]\n\n")
    assert w.finish().usage == Usage(input_tokens=12, output_tokens=5)
    assert [json.loads(d).get("usage") for d in decoded] == [USAGE]


def test_usage_behind_a_null_one_is_still_found_at_the_end(decoded: list[str]) -> None:
    hidden = {"choices": [{"delta": {}, "usage": None}], "usage": USAGE}
    w = watch(sse(chunk("Hi", usage=None), hidden))
    assert decoded == []  # both looked like null-usage chunks
    assert w.finish().usage == Usage(input_tokens=12, output_tokens=5)


def test_no_usage_at_all_leaves_the_text_for_the_estimate(decoded: list[str]) -> None:
    w = watch(sse(chunk("Hello"), chunk(" there", usage=None)))
    tally = w.finish()
    assert (tally.usage, tally.text, len(decoded)) == (None, "Hello there", 2)


def test_a_responses_stream_is_decoded_at_its_end_event(decoded: list[str]) -> None:
    response = {"id": "resp_1", "status": "in_progress", "usage": None}
    done = response | {"status": "completed", "usage": {"input_tokens": 7, "output_tokens": 3}}
    body = sse(
        {"type": "response.created", "response": response},
        {"type": "response.output_text.delta", "delta": "Hi"},
        {"type": "response.completed", "response": done},
    )
    w = watch(body, route="responses")
    assert w.finish().usage == Usage(input_tokens=7, output_tokens=3)
    assert [json.loads(d)["type"] for d in decoded] == ["response.completed"]


def test_the_usage_chunk_is_removed_when_the_client_did_not_ask() -> None:
    body = sse(chunk("Hi", usage=None), {"choices": [], "usage": USAGE}) + b"data: [DONE]\n\n"
    w = StreamWatch("chat/completions", drop_usage=True, full=False, trace=None)
    sent = w.feed(body)
    assert b'"usage": {' not in sent and b"[DONE]" in sent and b'"Hi"' in sent
    assert w.finish().usage == Usage(input_tokens=12, output_tokens=5)
