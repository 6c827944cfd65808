"""Error logging that a client cannot turn into a flood: one traceback per cause.

Every malformed request made aiohttp log a traceback, and so could any request that
trips an unexpected error: a client repeating one is a log flood.  A ``CauseLog``
stands in for a logger's ``exception()``: it counts every error in a metric (by the
exception's type) and writes the traceback only the first time a cause is seen, where
a cause is the exception's type and the line that raised it (a different bug of the
same type still gets its traceback).  The causes remembered are bounded: once
``MAX_CAUSES`` are known, new ones are counted only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

MAX_CAUSES = 1024

Cause = tuple[str, str, int]


class CauseLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``logger`` with an ``exception()`` that logs once per cause and counts always."""

    def __init__(self, logger: logging.Logger, count: Callable[[str], None]) -> None:
        super().__init__(logger, {})
        self._count = count
        self._seen: set[Cause] = set()

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        err = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        cause = _cause(err)
        self._count(cause[0])
        if cause in self._seen or len(self._seen) >= MAX_CAUSES:
            return
        self._seen.add(cause)
        self.logger.error(msg, *args, exc_info=err or exc_info, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


def _cause(err: BaseException | None) -> Cause:
    if err is None:
        return ("unknown", "", 0)
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return (type(err).__name__, "", 0)
    return (type(err).__name__, tb.tb_frame.f_code.co_filename, tb.tb_lineno)
