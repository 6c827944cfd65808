"""One subject's usage in minute buckets, for ``UsageCounters`` (see ``counters``).

Parallel ``array('q')`` columns sorted by minute (cost units, input tokens, output
tokens, requests), the running totals of each window asked about, the reservations
still pending and the rate window.  The rate window is made on a series' first rate
entry: most subjects never have one (no rate rule), and an empty one is most of an idle
series' size.  ``charges`` counts the charges added, so an eviction can tell that a
series it chose was charged again before it ran.

The columns are 64-bit: an addition that would leave their range saturates at its
bound instead of raising, so no count, however large, can stop a request from
settling; the cached window totals add what a bucket actually took, so they stay
equal to the sum of the buckets.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence

from waystone_cli.core.int64 import saturate
from waystone_cli.core.ratelimit import RateWindow


class Series:
    """One subject's minute buckets, cached window totals, reservations and rate window."""

    __slots__ = ("minutes", "cols", "sums", "pending", "rate", "charges")

    def __init__(self) -> None:
        self.minutes = array("q")
        # cost units, input tokens, output tokens, requests
        self.cols = (array("q"), array("q"), array("q"), array("q"))
        # window text -> [start minute, index of its first bucket, cost, in, out, requests]
        self.sums: dict[str, list[int]] = {}
        self.pending = [0, 0, 0]  # reserved cost units, tokens, requests
        self.rate: RateWindow | None = None
        self.charges = 0

    def add(self, minute: int, values: Sequence[int]) -> None:
        # On every settle: the columns are unrolled (a zip over them costs more).
        cost, tokens_in, tokens_out, requests = values
        self.charges += 1
        ms = self.minutes
        n = len(ms)
        i = n - 1 if n and ms[-1] == minute else bisect_left(ms, minute)
        c0, c1, c2, c3 = self.cols
        found = i < n and ms[i] == minute
        if not found:
            ms.insert(i, minute)
            c0.insert(i, 0)
            c1.insert(i, 0)
            c2.insert(i, 0)
            c3.insert(i, 0)
        t0, t1, t2, t3 = c0[i] + cost, c1[i] + tokens_in, c2[i] + tokens_out, c3[i] + requests
        try:  # items are stored in order: those before the one out of range are right
            c0[i], c1[i], c2[i], c3[i] = t0, t1, t2, t3
        except OverflowError:
            # Saturated: the totals below add what each bucket actually took.
            cost = saturate(t0) - (t0 - cost)
            tokens_in = saturate(t1) - (t1 - tokens_in)
            tokens_out = saturate(t2) - (t2 - tokens_out)
            requests = saturate(t3) - (t3 - requests)
            c0[i], c1[i], c2[i], c3[i] = saturate(t0), saturate(t1), saturate(t2), saturate(t3)
        for s in self.sums.values():
            if minute >= s[0]:
                s[2] += cost
                s[3] += tokens_in
                s[4] += tokens_out
                s[5] += requests
            elif not found:
                s[1] += 1  # a new bucket before the window's first one shifts its index

    def totals(self, window: str, start: int) -> list[int]:
        s = self.sums.get(window)
        ms = self.minutes
        if s is None or start < s[0]:
            i = bisect_left(ms, start)
            s = [start, i, *(sum(col[i:]) for col in self.cols)]
            self.sums[window] = s
        elif start > s[0]:
            i, n = s[1], len(ms)
            while i < n and ms[i] < start:
                for j, col in enumerate(self.cols):
                    s[2 + j] -= col[i]
                i += 1
            s[0], s[1] = start, i
        return s

    def prune(self, cutoff: int) -> None:
        k = bisect_left(self.minutes, cutoff)
        if not k:
            return
        del self.minutes[:k]
        for col in self.cols:
            del col[:k]
        for window, s in list(self.sums.items()):
            if s[1] < k:
                del self.sums[window]  # its totals include pruned buckets
            else:
                s[1] -= k

    def rate_window(self) -> RateWindow:
        if self.rate is None:
            self.rate = RateWindow()
        return self.rate

    def quiet(self) -> bool:
        """Nothing in flight: no reservation pending, no entry in the rate window."""
        return not any(self.pending) and (self.rate is None or self.rate.empty())

    def idle(self) -> bool:
        return not self.minutes and self.quiet()
