from __future__ import annotations

import random

import pytest

from waystone_cli.core.sse import SSEEvent, SSEParser, encode_event


def feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.flush()


STREAM = (
    b": keep-alive\n\n"
    b'event: response.created\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\n\n"
    b"id: 7\ndata:no space\n\n"
    b"data: \xc3\xa9t\xc3\xa9\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent(data='{"a": 1}', event="response.created"),
    SSEEvent(data="line one\nline two"),
    SSEEvent(data="no space", id="7"),
    SSEEvent(data="été", id="7"),
    SSEEvent(data="[DONE]", id="7"),
]


def test_parses_a_whole_stream_in_one_chunk() -> None:
    assert feed_all([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13])
def test_events_split_at_any_byte_parse_the_same(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert feed_all(chunks) == EXPECTED


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_every_line_ending_is_understood_even_split_between_cr_and_lf(eol: bytes) -> None:
    stream = STREAM.replace(b"\n", eol)
    assert feed_all([stream]) == EXPECTED
    assert feed_all([stream[i : i + 1] for i in range(len(stream))]) == EXPECTED


def test_events_are_returned_as_soon_as_their_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\ndata: b") == [SSEEvent(data="a")]
    assert parser.feed(b"\n\n") == [SSEEvent(data="b")]


def test_flush_delivers_an_event_missing_its_blank_line_but_not_a_half_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: last\n") == []
    assert parser.flush() == [SSEEvent(data="last")]
    parser = SSEParser()
    assert parser.feed(b"data: half") == []
    assert parser.flush() == []


def test_a_block_without_data_is_not_dispatched_and_unknown_fields_are_ignored() -> None:
    assert feed_all([b"event: ping\nretry: 10\nfoo: bar\n\n: comment\n\n"]) == []


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert feed_all([b"\xef\xbb\xbfdata: x\n\n"]) == [SSEEvent(data="x")]


def test_encode_event_round_trips_through_the_parser() -> None:
    frame = encode_event("one\ntwo", "response.completed")
    assert frame == b"event: response.completed\ndata: one\ndata: two\n\n"
    assert feed_all([frame]) == [SSEEvent(data="one\ntwo", event="response.completed")]


class LineByLine(SSEParser):
    """The parser without its fast path: every line through ``_line`` (the reference)."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        self._buffer = self._lines(self._buffer + chunk, events)
        return events


def _random_stream(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randrange(1, 12)):
        kind = rng.random()
        if kind < 0.55:
            lines.append(b"data:" + rng.choice([b" ", b""]) + rng.choice(_VALUES))
        elif kind < 0.65:
            lines.append(b"event: " + rng.choice([b"delta", b"done", b""]))
        elif kind < 0.72:
            lines.append(b"id: " + rng.choice([b"1", b"x\0y", b""]))
        elif kind < 0.78:
            lines.append(b": comment")
        elif kind < 0.82:
            lines.append(b"retry: 10")
        else:
            lines.append(b"")
    eol = rng.choice([b"\n", b"\n", b"\n", b"\r\n", b"\r"])
    bom = b"\xef\xbb\xbf" if rng.random() < 0.1 else b""
    ending = rng.choice([b"\n\n", b"\n", b""]).replace(b"\n", eol)
    return bom + eol.join(lines) + ending


_VALUES = [b'{"choices": []}', b"[DONE]", b"\xc3\xa9t\xc3\xa9", b"a:b", b"", b" two spaces"]


@pytest.mark.parametrize("seed", range(300))
def test_the_fast_path_parses_as_the_line_by_line_parser(seed: int) -> None:
    rng = random.Random(seed)
    stream = b"".join(_random_stream(rng) for _ in range(rng.randrange(1, 6)))
    cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randrange(0, 6))))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    fast, reference = SSEParser(), LineByLine()
    got = [e for chunk in chunks for e in fast.feed(chunk)] + fast.flush()
    expected = [e for chunk in chunks for e in reference.feed(chunk)] + reference.flush()
    assert got == expected, (stream, chunks)


@pytest.mark.parametrize("cut", range(1, 4))
def test_a_byte_order_mark_split_across_chunks_is_still_ignored(cut: int) -> None:
    stream = b"\xef\xbb\xbfdata: x\n\ndata: y\n\n"
    assert feed_all([stream[:cut], stream[cut:]]) == [SSEEvent(data="x"), SSEEvent(data="y")]
