"""Per-subject rate windows: requests and tokens started in the last 60 seconds.

Each admitted request leaves an entry (start time, tokens).  Its tokens are the estimate
until the request settles, then the actual count, so ``tpm`` reads real usage as soon as
it is known.  Entries leave from the front as they age past 60 s; the running sums make
a read O(1) amortized.  ``reset_at`` is when the oldest entry leaves, i.e. when the next
``rpm`` slot frees (for ``tpm`` the earliest moment usage can drop).  Concurrency is the
count of live reservations, which the counters keep.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

PERIOD_S = 60.0


class RateState(NamedTuple):  # a tuple: read on every request with a rate rule
    requests: int  # started in the last 60 s, in-flight ones included
    tokens: int  # their tokens: estimates until settled, then actual
    concurrent: int  # in flight now
    reset_at: float | None  # epoch seconds when the oldest entry leaves the window


class RateEntry:
    """One request in the window; ``settle`` swaps its estimate for the actual tokens."""

    __slots__ = ("owner", "started", "tokens", "live")

    def __init__(self, owner: RateWindow, started: float, tokens: int) -> None:
        self.owner = owner
        self.started = started
        self.tokens = tokens
        self.live = True

    def settle(self, tokens: int) -> None:
        if self.live:
            self.owner.tokens += tokens - self.tokens
        self.tokens = tokens


class RateWindow:
    __slots__ = ("entries", "requests", "tokens")

    def __init__(self) -> None:
        self.entries: deque[RateEntry] = deque()
        self.requests = 0
        self.tokens = 0

    def start(self, now_s: float, tokens: int) -> RateEntry:
        entries = self.entries
        if entries and entries[0].started <= now_s - PERIOD_S:
            self.expire(now_s)
        entry = RateEntry(self, now_s, tokens)
        entries.append(entry)
        self.requests += 1
        self.tokens += tokens
        return entry

    def expire(self, now_s: float) -> None:
        entries = self.entries
        while entries and entries[0].started <= now_s - PERIOD_S:
            entry = entries.popleft()
            entry.live = False
            self.requests -= 1
            self.tokens -= entry.tokens

    def state(self, now_s: float, concurrent: int) -> RateState:
        self.expire(now_s)
        reset = self.entries[0].started + PERIOD_S if self.entries else None
        return RateState(self.requests, self.tokens, concurrent, reset)

    def empty(self) -> bool:
        return not self.entries
