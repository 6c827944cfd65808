"""Daemon logging: one line per request without a write system call per line.

Request lines go to a buffered stream over stderr that is flushed a few times a second
(and at once for warnings and errors, and at shutdown): at thousands of requests a
second a write and a flush per line would cost the event loop a noticeable share.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import sys

FLUSH_EVERY_S = 0.25


class BufferedStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self) -> None:
        stream = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(os.dup(sys.stderr.fileno()), "w"), buffer_size=1 << 16),
            encoding="utf-8",
            errors="replace",
            write_through=False,
        )
        super().__init__(stream)

    def flush(self) -> None:
        """Flushing is the timer's job (see ``flush_now``); ``emit`` must not do it."""

    def flush_now(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.flush_now()

    def close(self) -> None:
        self.flush_now()
        super().close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: request lines as the observer built them, any other
    record as ``{"time", "level", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "json_record", False):
            return record.getMessage()
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str) -> BufferedStderrHandler:
    handler = BufferedStderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return handler


async def flush_periodically(handler: BufferedStderrHandler) -> None:
    try:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            handler.flush_now()
    finally:
        handler.flush_now()
