"""Reading a relayed stream on the side (``daemon.request.stream.StreamWatch``): only events that
may carry usage are decoded at once, and a wrong guess never loses usage."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from daemon.request import stream
from daemon.request.stream import StreamWatch
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


def _random_event(rng: random.Random) -> bytes:
    usage = {"prompt_tokens": rng.randrange(50), "completion_tokens": rng.randrange(50)}
    kind = rng.randrange(9)
    if kind == 0:
        data = json.dumps({"choices": [], "usage": usage})
    elif kind == 1:
        data = json.dumps(chunk(rng.choice(["a", "bc", "usage"]), usage=None))
    elif kind == 2:
        data = json.dumps({"choices": [], "usage": rng.choice([5, {}, "x"])})  # junk usage
    elif kind == 3:
        data = json.dumps({"choices": [{"delta": {}, "usage": None}], "usage": usage})
    elif kind == 4:
        response = {"status": "completed", "usage": rng.choice([None, usage])}
        end = rng.choice(["response.completed", "response.created", "response.failed"])
        data = json.dumps({"type": end, "response": response})
    elif kind == 5:
        data = "[DONE]"
    elif kind == 6:
        data = json.dumps(chunk(rng.choice(["x", "yz"])), indent=1)  # several data lines
    elif kind == 7:
        return b": keep-alive\n\n"
    else:
        data = json.dumps(chunk(rng.choice(["q", "rs"])))
    head = b"event: message\n" if rng.random() < 0.2 else b""
    lines = b"".join(b"data: " + line.encode() + b"\n" for line in data.split("\n"))
    return head + lines + b"\n"


@pytest.mark.parametrize("seed", range(200))
def test_lazy_reading_finds_what_reading_every_event_finds(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(_random_event(rng) for _ in range(rng.randrange(1, 9)))
    if rng.random() < 0.2:
        stream = stream.replace(b"\n", b"\r\n")
    if rng.random() < 0.2:
        stream = stream[: rng.randrange(len(stream) + 1)]  # cut short anywhere
    cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randrange(4))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    route = "responses" if b"response." in stream else "chat/completions"
    lazy = StreamWatch(route, drop_usage=False, full=False, trace=None)
    every = StreamWatch(route, drop_usage=False, full=True, trace=None)
    for piece in chunks:
        assert lazy.feed(piece) == piece
        every.feed(piece)
    got, expected = lazy.finish(), every.finish()
    assert got.usage == expected.usage, stream
    if expected.usage is None:  # the estimate reads the text
        assert got.text == expected.text, stream


@pytest.mark.parametrize(
    ("drop_usage", "with_usage"), [(False, False), (False, True), (True, False)]
)
def test_a_long_stream_keeps_bounded_side_state_and_counts_all_of_its_text(
    drop_usage: bool, with_usage: bool
) -> None:
    piece = "x" * 1000
    events = [chunk(piece, usage=None) for _ in range(3 * stream.SIDE_BYTES // 1000)]
    body = sse(*events, *([{"choices": [], "usage": USAGE}] if with_usage else []))
    w = StreamWatch("chat/completions", drop_usage=drop_usage, full=False, trace=None)
    for at in range(0, len(body), 65536):
        w.feed(body[at : at + 65536])
        held = sum(map(len, w._raw or ())) + sum(map(len, w._deferred))
        assert held <= stream.SIDE_BYTES + 65536
    tally = w.finish()
    if with_usage:
        assert tally.usage == Usage(input_tokens=12, output_tokens=5)
        return
    assert tally.usage is None
    assert len(tally.text) == stream.SIDE_BYTES  # kept up to the bound ...
    assert tally.estimate_output_tokens() == len(events) * 250  # ... counted whole


@pytest.mark.parametrize("seed", range(100))
def test_side_state_past_its_bound_finds_what_reading_every_event_finds(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "SIDE_BYTES", 40)  # every bound is passed at once
    rng = random.Random(seed)
    pieces = [_random_event(rng) for _ in range(rng.randrange(1, 12))]
    lazy = StreamWatch("chat/completions", drop_usage=False, full=False, trace=None)
    every = StreamWatch("chat/completions", drop_usage=False, full=True, trace=None)
    for piece in pieces:
        assert lazy.feed(piece) == piece
        every.feed(piece)
    got, expected = lazy.finish(), every.finish()
    assert got.usage == expected.usage
    assert got.estimate_output_tokens() == expected.estimate_output_tokens()
    assert got.text == expected.text[:40]


# --- Anthropic's Messages streams ------------------------------------------------------


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 20,
            "cache_creation_input_tokens": 30,
            "output_tokens": 1,
        }
    },
}


def text_delta(text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def message_delta(output_tokens: int) -> dict[str, Any]:
    return {"type": "message_delta", "delta": {}, "usage": {"output_tokens": output_tokens}}


@pytest.mark.parametrize("full", [False, True])
def test_a_messages_stream_read_lazily_or_whole_counts_the_last_delta_once(full: bool) -> None:
    data = anthropic_sse(
        MESSAGE_START,
        text_delta("Hello"),
        text_delta(" there"),
        message_delta(3),
        message_delta(5),
        message_delta(7),
        {"type": "message_stop"},
    )
    w = StreamWatch("messages", drop_usage=False, full=full, trace=None)
    assert b"".join(w.feed(data[i : i + 17]) for i in range(0, len(data), 17)) == data
    tally = w.finish()
    assert tally.usage == Usage(60, 7, cached_tokens=20, cache_write_tokens=30)
    assert tally.text == ("Hello there" if full else "")


def test_a_messages_stream_cut_before_its_delta_keeps_the_text_for_the_estimate() -> None:
    w = StreamWatch("messages", drop_usage=False, full=False, trace=None)
    w.feed(anthropic_sse(MESSAGE_START, text_delta("Hello there")))
    tally = w.finish()
    assert tally.usage is None
    assert tally.cut_usage(tally.estimate_output_tokens()) == Usage(
        60, 3, cached_tokens=20, cache_write_tokens=30
    )
