"""Ledger rows of refused unauthenticated requests, rate-limited by address and cause.

Every request gets its ledger row, but a client without a valid gateway key could
otherwise write a row (and a log line) per request for as long as it likes.  So the
rows of requests refused before a valid key was shown are admitted up to
``ROWS_PER_MINUTE`` per remote address and cause in each clock minute; the rest are
dropped, counted in ``waystone_refused_rows_dropped{cause}`` and summed up in one
warning ``SUMMARY_S`` after the first drop (and when the daemon stops).  A request
that showed a valid key always keeps its row, refused or not.

The state is bounded: at most ``MAX_SOURCES`` (address, cause) pairs are tracked per
minute; beyond that, new addresses share one allowance.  Behind a reverse proxy every
client has the proxy's address, so the allowance is the proxy's as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

ROWS_PER_MINUTE = 10
MAX_SOURCES = 10_000
SUMMARY_S = 60.0
_OTHER = "_other"

log = logging.getLogger("waystone.daemon")


class RefusedRows:
    """Decides which refused unauthenticated requests get their row (see the module)."""

    def __init__(
        self,
        count_dropped: Callable[[str], None],
        *,
        per_minute: int = ROWS_PER_MINUTE,
        max_sources: int = MAX_SOURCES,
        summary_s: float = SUMMARY_S,
    ) -> None:
        self._count_dropped = count_dropped
        self._per_minute = per_minute
        self._max_sources = max_sources
        self._summary_s = summary_s
        self._minute = -1
        self._admitted: dict[tuple[str, str], int] = {}
        # Since the last summary: rows dropped by cause, and from how many addresses.
        self._dropped: dict[str, int] = {}
        self._sources: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, remote: str, cause: str, now_s: float) -> bool:
        """Whether this refused request's row is written (``now_s``: epoch seconds)."""
        minute = int(now_s // 60)
        if minute != self._minute:
            self._minute, self._admitted = minute, {}
        key = (remote, cause)
        if key not in self._admitted and len(self._admitted) >= self._max_sources:
            key = (_OTHER, cause)
        admitted = self._admitted.get(key, 0)
        if admitted < self._per_minute:
            self._admitted[key] = admitted + 1
            return True
        self._drop(remote, cause)
        return False

    def summarize(self) -> None:
        """Log the rows dropped since the last summary, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._dropped:
            return
        causes = ", ".join(f"{cause}={n}" for cause, n in sorted(self._dropped.items()))
        log.warning(
            "dropped the ledger rows of %d refused unauthenticated requests (%s) from %d "
            "addresses (kept: %d a minute per address and cause)",
            sum(self._dropped.values()),
            causes,
            len(self._sources),
            self._per_minute,
        )
        self._dropped, self._sources = {}, set()

    def _drop(self, remote: str, cause: str) -> None:
        self._count_dropped(cause)
        self._dropped[cause] = self._dropped.get(cause, 0) + 1
        if len(self._sources) < self._max_sources:
            self._sources.add(remote)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._summary_s, self.summarize)
