"""An incremental parser for Server-Sent Events, as providers stream them.

The proxy reads usage "on the side" of a stream it passes through chunk by chunk, so the
parser takes bytes exactly as they arrive: an event may be split anywhere, even inside a
UTF-8 character or between the ``\\r`` and ``\\n`` of a line ending.  It follows the
WHATWG rules: lines end with ``\\r\\n``, ``\\n`` or ``\\r``; a line starting with ``:`` is a
comment; ``data`` lines of one event are joined with ``\\n``; one space after the colon
is dropped; a blank line dispatches the event; an event with no ``data`` line is not
dispatched.  Unknown fields are ignored.

Unlike a browser, ``flush()`` at the end of the stream dispatches an event whose blank
line never came (a provider that closes right after its last ``data:`` line still
delivers it); a half line with no line ending is still dropped.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff".encode()


class SSEEvent(NamedTuple):  # a tuple: one per streamed event, cheaper than a dataclass
    """One dispatched event: ``event`` is None when the stream sent no ``event:`` line."""

    data: str
    event: str | None = None
    id: str | None = None


def encode_event(data: str, event: str | None = None) -> bytes:
    """One SSE frame: an optional ``event:`` line, one ``data:`` line per line, a blank line."""
    head = f"event: {event}\n" if event is not None else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode("utf-8")


class SSEParser:
    """Feed it the bytes of one stream as they arrive; it returns the complete events."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._first_line = True

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if self._first_line and len(buffer) >= len(_BOM) and not buffer.startswith(_BOM):
            self._first_line = False  # no byte order mark to remove: any path will do
        if self._first_line or self._data or self._event is not None or b"\r" in buffer:
            events: list[SSEEvent] = []
            self._buffer = self._lines(buffer, events)
            return events
        return self._blocks(buffer)

    def flush(self) -> list[SSEEvent]:
        """End of stream: dispatch the event still pending (see the module docstring)."""
        events: list[SSEEvent] = []
        rest = self._lines(self._buffer, events)
        if rest.endswith(b"\r"):
            self._line(rest[:-1], events)
        self._buffer = b""
        self._dispatch(events)
        return events

    def _blocks(self, buffer: bytes) -> list[SSEEvent]:
        """The usual stream, fast: ``\n`` line endings, no event pending, and most
        events one ``data:`` line.  Whole events (up to a blank line) are cut out with
        one ``split``; an event of another shape goes through ``_line`` like any other.
        What follows the last blank line waits in the buffer (``flush`` reads it)."""
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        events: list[SSEEvent] = []
        for block in blocks:
            if block.startswith(b"data:") and b"\n" not in block:
                value = block[6:] if block[5:6] == b" " else block[5:]
                events.append(SSEEvent(value.decode("utf-8", "replace"), None, self._id))
                continue
            for line in block.split(b"\n"):
                self._line(line, events)
            self._dispatch(events)  # the blank line that ended the block
        return events

    def _lines(self, buffer: bytes, events: list[SSEEvent]) -> bytes:
        """Every complete line of ``buffer`` (any line ending); returns the rest."""
        start = 0
        for match in _EOL.finditer(buffer):
            # A lone \r at the very end may be the first half of \r\n: wait for more.
            if match.end() == len(buffer) and match.group() == b"\r":
                break
            self._line(buffer[start : match.start()], events)
            start = match.end()
        return buffer[start:]

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(SSEEvent(data="\n".join(self._data), event=self._event, id=self._id))
        self._data = []
        self._event = None
