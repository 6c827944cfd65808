"""An answer's body as ``http_client`` hands it on: decoded, and bounded as decoded.

``gzip`` and ``deflate`` bodies are inflated piece by piece, each piece only up to what
is left of ``max_bytes`` (and one byte more, which shows the bound was passed), so a
small compressed bomb never becomes a large buffer; a plain body is counted the same
way.  Past the bound the answer fails with ``AnswerTooLarge``.
"""

from __future__ import annotations

import zlib
from typing import Any

_COMPRESSED = ("gzip", "x-gzip", "deflate")


class AnswerTooLarge(ConnectionError):
    """The answer's decoded body passed the request's ``max_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class BodyDecoder:
    """One answer's body: ``feed`` each piece as it arrives, ``end`` when it is complete.
    Both raise ``ConnectionError`` (``AnswerTooLarge`` past the bound)."""

    __slots__ = ("_inflater", "_inflated", "_max_bytes", "_received")

    def __init__(self, content_encoding: str, max_bytes: int | None) -> None:
        encoding = content_encoding.strip().lower()
        self._inflater: Any = None
        if encoding in _COMPRESSED:
            # wbits 47: a gzip or a zlib stream, told apart by its header
            self._inflater = zlib.decompressobj(47)
        elif encoding not in ("identity", ""):
            raise ConnectionError(f"answer in an encoding that was not asked for: {encoding}")
        self._inflated = False  # compressed bytes were fed to the inflater
        self._max_bytes = max_bytes
        self._received = 0

    def feed(self, data: bytes) -> bytes:
        if self._inflater is not None:
            self._inflated = True
            try:
                data = self._inflater.decompress(data, self._room())
            except zlib.error as err:
                raise ConnectionError(f"undecodable answer body: {err}") from err
        return self._counted(data)

    def end(self) -> bytes:
        """What the inflater still held; a compressed body must have ended its stream."""
        inflater, self._inflater = self._inflater, None
        if inflater is None:
            return b""
        tail = self._counted(inflater.flush())
        if self._inflated and not inflater.eof:
            raise ConnectionError("the compressed answer ends inside its stream")
        return tail

    def _room(self) -> int:
        """How much a compressed piece may inflate to (0: no bound)."""
        if self._max_bytes is None:
            return 0
        return max(1, self._max_bytes - self._received + 1)

    def _counted(self, data: bytes) -> bytes:
        self._received += len(data)
        if self._max_bytes is not None and self._received > self._max_bytes:
            raise AnswerTooLarge(self._max_bytes)
        return data
