"""Reading a relayed SSE stream on the side, as cheaply as the request allows.

Bytes go to the client as they came, unless the usage-only chunk waystone asked for
must be removed (then events are re-framed, one by one, without it).  What waystone
needs from the stream is its usage (one event near the end) and, sometimes, its text:

- *full* reading (a trace, an output check, capture or a dataset needs the text or
  every event): every event is decoded, in order;
- when the usage-only chunk is removed, only events that can carry usage are decoded;
  the others are kept as strings and decoded only if the stream ends without usage,
  when the estimate needs the streamed text;
- otherwise (*lazy*: nothing to change, no text needed as it comes) the chunks are only
  kept, and read once when the stream is over: from the end, the event around the last
  ``"usage"`` that is not null is decoded, which is all a stream that reports its usage
  needs; a stream that does not is then read whole, as the others are.  This takes
  less than half the time of decoding event by event.

What is held on the side stays bounded however long the stream: a lazy reader past
``SIDE_BYTES`` of chunks reads them and goes on event by event; deferred events past
``SIDE_BYTES`` are decoded at once; and unless the text itself is needed (*full*), only
``SIDE_BYTES`` characters of it are kept, the rest only counted for the estimate.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from daemon.providers.jsonio import decode_reply
from waystone_cli.core.messages import Tally, new_tally
from waystone_cli.core.sse import SSEEvent, SSEParser, encode_event
from waystone_cli.core.usage import StreamTally

if TYPE_CHECKING:
    from daemon.telemetry.tracing import RequestTrace

# An event is decoded at once only if its data may carry usage: a "usage" key that is not
# null (OpenAI sends "usage": null in every chunk of a stream that asked for usage), or
# the end of a responses stream.  Substring tests, not one regex search per event, which
# costs more.  A wrong guess costs time, never usage: ``finish`` decodes the
# deferred events when no usage came.
_NULL_USAGE = re.compile(r'"usage"\s*:\s*null')
_NULL_USAGE_BYTES = re.compile(rb'"usage"\s*:\s*null')
_USAGE_KEY = b'"usage"'
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")
SIDE_BYTES = 1 << 20  # each kind of side state: far above a usual stream's whole size


def _may_carry_usage(data: str) -> bool:
    if '"usage"' in data:
        return _NULL_USAGE.search(data) is None
    return any(end in data for end in _RESPONSE_ENDS)


class StreamWatch:
    def __init__(
        self, route: str, *, drop_usage: bool, full: bool, trace: RequestTrace | None
    ) -> None:
        self._text_limit = None if full else SIDE_BYTES
        self.tally: Tally = new_tally(route, self._text_limit)
        self._parser = SSEParser()
        self._drop_usage = drop_usage
        self._full = full
        self._trace = trace
        self._deferred: list[str] = []
        self._deferred_size = 0
        self._raw: list[bytes] | None = None if drop_usage or full else []
        self._raw_size = 0

    def feed(self, chunk: bytes) -> bytes:
        """Read ``chunk`` on the side; return the bytes to send to the client."""
        if self._raw is not None:  # lazy: read in ``finish``
            self._raw.append(chunk)
            self._raw_size += len(chunk)
            if self._raw_size > SIDE_BYTES:  # too long to keep: read it as it comes
                held, self._raw = b"".join(self._raw), None
                self._read_all(held)
            return chunk
        if not self._drop_usage:
            self._read_all(chunk)
            return chunk
        out = bytearray()
        for event in self._parser.feed(chunk):
            if not self._read(event):
                out += encode_event(event.data, event.event)
        return bytes(out)

    def finish(self) -> Tally:
        """The tally, with deferred events decoded if usage never arrived."""
        if self._raw is not None:
            self._finish_lazy(b"".join(self._raw))
            self._raw = []
            return self.tally
        for event in self._parser.flush():  # an event whose blank line never came
            self._read(event)
        if self.tally.usage is None:
            self._decode_deferred()
        return self.tally

    def _read_all(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            self._read(event)

    def _decode_deferred(self) -> None:
        for data in self._deferred:
            decoded = _decode(data)
            if decoded is not None:
                self.tally.feed(decoded)
        self._deferred.clear()
        self._deferred_size = 0

    def _finish_lazy(self, data: bytes) -> None:
        if b"\r" not in data:  # \n-framed: an event is what lies between blank lines
            end = len(data)
            while (at := data.rfind(_USAGE_KEY, 0, end)) >= 0:
                start = data.rfind(b"\n\n", 0, at)
                start = 0 if start < 0 else start + 2
                stop = data.find(b"\n\n", at)
                block = data[start : len(data) if stop < 0 else stop + 2]
                if block.count(_USAGE_KEY) > 1 or _NULL_USAGE_BYTES.search(block) is None:
                    self._tally(_event_data(block))
                    if self.tally.usage is not None:
                        return
                end = start
        self.tally = new_tally(self.tally.route, self._text_limit)  # read it all afresh
        self._tally(_event_data(data))

    def _tally(self, texts: list[str]) -> None:
        for text in texts:
            if text != "[DONE]":
                decoded = _decode(text)
                if decoded is not None:
                    self.tally.feed(decoded)

    def _read(self, event: SSEEvent) -> bool:
        """Account for one event; True when it is the usage-only chunk to remove."""
        data = event.data
        if data == "[DONE]":
            return False
        if not self._full and not _may_carry_usage(data):
            self._deferred.append(data)
            self._deferred_size += len(data)
            if self._deferred_size > SIDE_BYTES:
                self._decode_deferred()  # usage comes after them, if at all: same tally
            return False
        decoded = _decode(data)
        if decoded is None:
            return False
        self.tally.feed(decoded)
        if self._trace is not None:
            self._trace.note(decoded)
        return self._drop_usage and StreamTally.is_usage_only_chunk(decoded)


def _event_data(data: bytes) -> list[str]:
    """The data of every event in ``data``, which starts where an event starts."""
    if data.endswith(b"\n\n"):
        lines = data.count(b"\n")
        if lines == 2 and data.startswith(b"data: "):
            return [data[6:-2].decode("utf-8", "replace")]  # one event of one data line
        if lines == 3 and data.startswith(b"event: "):  # a named one, as Anthropic's are
            at = data.find(b"\ndata: ")
            if at > 0:
                return [data[at + 7 : -2].decode("utf-8", "replace")]
    parser = SSEParser()
    return [event.data for event in parser.feed(data) + parser.flush()]


def _decode(data: str) -> dict[str, Any] | None:
    decoded = decode_reply(data)
    return decoded if isinstance(decoded, dict) else None
