"""Reading a relayed SSE stream on the side, as cheaply as the request allows.

Bytes go to the client as they came, unless the usage-only chunk waystone asked for
must be removed (then events are re-framed, one by one, without it).  What waystone
needs from the stream is its usage (one event near the end) and, sometimes, its text:

- *full* reading (a trace, an output check, capture or a dataset needs the text or
  every event): every event is decoded, in order;
- otherwise only events that can carry usage are decoded; the others are kept as
  strings and decoded only if the stream ends without usage, when the estimate needs
  the streamed text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from daemon.jsonio import decode_reply
from waystone_cli.core.sse import SSEEvent, SSEParser, encode_event
from waystone_cli.core.usage import StreamTally

if TYPE_CHECKING:
    from daemon.tracing import RequestTrace

# An event is decoded at once only if its data may carry usage: a "usage" key that is not
# null (OpenAI sends "usage": null in every chunk of a stream that asked for usage), or
# the end of a responses stream.  Substring tests, not one regex search per event: that
# took 3 µs an event.  A wrong guess costs time, never usage: ``finish`` decodes the
# deferred events when no usage came.
_NULL_USAGE = re.compile(r'"usage"\s*:\s*null')
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


def _may_carry_usage(data: str) -> bool:
    if '"usage"' in data:
        return _NULL_USAGE.search(data) is None
    return any(end in data for end in _RESPONSE_ENDS)


class StreamWatch:
    def __init__(
        self, route: str, *, drop_usage: bool, full: bool, trace: RequestTrace | None
    ) -> None:
        self.tally = StreamTally(route)
        self._parser = SSEParser()
        self._drop_usage = drop_usage
        self._full = full
        self._trace = trace
        self._deferred: list[str] = []

    def feed(self, chunk: bytes) -> bytes:
        """Read ``chunk`` on the side; return the bytes to send to the client."""
        events = self._parser.feed(chunk)
        if not self._drop_usage:
            for event in events:
                self._read(event)
            return chunk
        out = bytearray()
        for event in events:
            if not self._read(event):
                out += encode_event(event.data, event.event)
        return bytes(out)

    def finish(self) -> StreamTally:
        """The tally, with deferred events decoded if usage never arrived."""
        if self.tally.usage is None:
            for data in self._deferred:
                decoded = _decode(data)
                if decoded is not None:
                    self.tally.feed(decoded)
            self._deferred.clear()
        return self.tally

    def _read(self, event: SSEEvent) -> bool:
        """Account for one event; True when it is the usage-only chunk to remove."""
        data = event.data
        if data == "[DONE]":
            return False
        if not self._full and not _may_carry_usage(data):
            self._deferred.append(data)
            return False
        decoded = _decode(data)
        if decoded is None:
            return False
        self.tally.feed(decoded)
        if self._trace is not None:
            self._trace.note(decoded)
        return self._drop_usage and StreamTally.is_usage_only_chunk(decoded)


def _decode(data: str) -> dict[str, Any] | None:
    decoded = decode_reply(data)
    return decoded if isinstance(decoded, dict) else None
