"""The counter store seam: what the request path reserves in and settles to.

Two implementations, chosen once at start from ``[cluster] redis_url``:

- ``MemoryStore`` wraps ``core.counters.UsageCounters`` (the default, one instance):
  ``admit`` reserves in the same event-loop step as the decision, as always.
- ``RedisStore`` (``daemon/counters/redis_store.py``) keeps every counter and
  reservation in Redis; ``admit`` re-tests the decision's limits and reserves in one
  script call on the server.

Both take the decision ``core.policy.decide`` made against ``view`` (the one
evaluator) and a ``Hold`` (what to reserve).  ``admit`` returns the reservation, or
``STALE`` when the shared counters no longer agree with what the decision read: the
caller decides again (the view has been refreshed) and tries again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from waystone_cli.core.counters import Subject, UsageCounters, UsageView
from waystone_cli.core.decision import Decision

# Returned by ``admit`` and ``confirm`` when the decision must be made again.
STALE: Any = object()


class Hold(NamedTuple):  # a tuple built by keyword: one per request
    """What an admitted request reserves: its subjects and its estimate."""

    subjects: tuple[Subject, ...]
    user_id: str | None
    group_id: str | None
    tokens: int
    cost_usd: float
    now: datetime
    rate: bool
    # Unpriced and refused for it (``unpriced_blocks``): cost limits do not decide.
    unpriced: bool = False


class CounterStore(Protocol):
    @property
    def view(self) -> UsageView:
        """What ``decide()`` reads now."""
        ...

    async def admit(self, decision: Decision, hold: Hold) -> Any:
        """Reserve ``hold`` if ``decision`` still stands; the reservation, or ``STALE``."""
        ...

    async def confirm(self, decision: Decision) -> Any:
        """Whether a refusal stands: None, or ``STALE``."""
        ...

    def settle(
        self,
        reservation: Any,
        *,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | Decimal | None,
        now: datetime,
    ) -> None: ...

    def release(self, reservation: Any) -> None: ...

    async def refresh(
        self, user_id: str, group_id: str | None, windows: Iterable[str], now: datetime
    ) -> None:
        """Bring ``view`` up to date for every metric of these subjects and windows."""
        ...


class MemoryStore:
    """The in-memory counters of one instance, unchanged in behaviour."""

    def __init__(self, counters: UsageCounters) -> None:
        self.counters = counters

    @property
    def view(self) -> UsageView:
        return self.counters

    async def admit(self, decision: Decision, hold: Hold) -> Any:
        # No await before reserving: the decision and the reservation are one loop step.
        return self.counters.reserve(
            hold.subjects,
            user_id=hold.user_id,
            group_id=hold.group_id,
            tokens=hold.tokens,
            cost_usd=hold.cost_usd,
            now=hold.now,
            rate=hold.rate,
        )

    async def confirm(self, decision: Decision) -> Any:
        return None

    def settle(
        self,
        reservation: Any,
        *,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | Decimal | None,
        now: datetime,
    ) -> None:
        self.counters.settle(
            reservation, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost_usd, now=now
        )

    def release(self, reservation: Any) -> None:
        self.counters.release(reservation)

    async def refresh(
        self, user_id: str, group_id: str | None, windows: Iterable[str], now: datetime
    ) -> None:
        return None  # the counters are the live ones
