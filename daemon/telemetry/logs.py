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
import time
from collections.abc import Sequence

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


class TextFormatter(logging.Formatter):
    """``asctime level logger message``, the time formatted once per second, not per line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return f"{self._stamp_of(record.created)},{int(record.msecs):03d}"

    def line(self, name: str, levelname: str, message: str, created: float) -> str:
        """What ``format`` prints for a record with these fields and no exception."""
        # As LogRecord computes msecs (int() of it: the same in every Python version).
        msecs = int((created - int(created)) * 1000)
        return f"{self._stamp_of(created)},{msecs:03d} {levelname} {name} {message}"

    def _stamp_of(self, created: float) -> str:
        """The time to the second, as the standard formatter prints it; made once a second."""
        second = int(created)
        if second != self._second:
            stamp = time.strftime(self.default_time_format, self.converter(created))
            self._second, self._stamp = second, stamp
        return self._stamp


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


def direct_handler(logger: logging.Logger, *, json_record: bool) -> BufferedStderrHandler | None:
    """The daemon's handler, if an INFO record of ``logger`` could go nowhere else.

    None when anything else could see the record: a filter, another handler, another
    formatter (tests' ``caplog``, a host application's logging), or a level that drops it.
    """
    if logger.disabled or logger.filters:
        return None
    handler = None
    current: logging.Logger | None = logger
    while current is not None:
        for candidate in current.handlers:
            if handler is not None:
                return None
            handler = candidate
        if not current.propagate:
            break
        current = current.parent
    if (
        type(handler) is not BufferedStderrHandler
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    formatter = handler.formatter
    if type(formatter) is TextFormatter or (type(formatter) is JsonFormatter and json_record):
        return handler
    return None


def write_direct(
    logger: logging.Logger, lines: Sequence[tuple[float, str]], *, json_record: bool
) -> bool:
    """Print INFO messages of ``logger`` the way ``logger.info`` would, each with its own
    time (``(created, message)`` pairs), without building ``LogRecord``s, when the daemon's
    own handler is the only place the records could go (``direct_handler``); True if it
    did.  False, with nothing written, otherwise: the caller then logs them as usual.

    One line per request through ``logger.info`` is a visible share of the gateway's CPU
    (record, handler lock and format); this path is a
    fraction of that, takes the handler's lock once for all the lines, and each line is
    byte for byte what ``logger.info`` prints (tests/unit/daemon/telemetry/test_logs.py).
    """
    handler = direct_handler(logger, json_record=json_record)
    if handler is None:
        return False
    formatter = handler.formatter
    end = handler.terminator
    if type(formatter) is TextFormatter:
        name = logger.name
        text = "".join(f"{formatter.line(name, 'INFO', m, at)}{end}" for at, m in lines)
    else:
        text = "".join(f"{m}{end}" for _, m in lines)
    # As ``emit`` would, a line that cannot be written is lost, never the request.
    # (A Handler's lock is set when it is built.)
    with handler.lock, contextlib.suppress(OSError, ValueError):  # type: ignore[union-attr]
        handler.stream.write(text)
    return True


def setup_logging(fmt: str) -> BufferedStderrHandler:
    """The daemon's logging: one buffered handler on the root logger.

    It also switches off what the logging module would look up for every record and no
    line prints (the caller's file and line, thread, process and task names), as the
    logging HOWTO's "Optimization" section describes: a request line then costs a
    fraction of what it did.
    """
    logging._srcfile = None  # no findCaller() per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # Python 3.12+
    handler = BufferedStderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
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
