"""Counters in Redis: every instance admits, settles and expires against one server.

Admission is one script call (``counters.lua``, op ``admit``): it computes the current
value of every limit the decision tested (``Decision.limits`` and ``rate_limits``),
checks that each is on the side of its limit the decision saw, and only then reserves
the estimate for every subject, atomically.  So the decision of the one evaluator
(``core.policy.decide``) is exactly the decision it would make on the server's state,
and the overshoot bound of one instance holds for all of them together.  A refusal
(429) is confirmed the same way without reserving; a policy block (403) never depends
on the counters and is not sent.

Settling is fire and forget: the script call is queued on the link's next batch and
the request goes on (the ledger row is what must be durable; the reservation covers
the usage until the settle lands).  A settle that cannot be sent (Redis down, or data
lost) waits in the replay queue; see ``recover``.

Faults (``on_redis_error``): with ``"block"`` a request that some limit applies to is
refused with 503 ``cluster_unavailable`` while Redis is down or its counters are being
rebuilt; a request no limit applies to is served and its usage replayed later.  With
``"local"`` the instance switches to its in-memory counters (rebuilt from its ledger)
until Redis is back, then replays what it settled meanwhile and switches back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.counters.link import Link, RedisDown
from daemon.counters.store import STALE, Hold, MemoryStore
from daemon.counters.view import RedisView, member_key, subject_key
from waystone_cli.core.counters import COST_SCALE, Subject, UsageCounters, UsageView, to_units
from waystone_cli.core.decision import Decision, Limit
from waystone_cli.core.errors import ClusterUnavailable

log = logging.getLogger("waystone.counters")

RATE_METRICS = ("rpm", "tpm", "concurrent")
REPLAY_MAX = 200_000
UNREACHED = 1e300  # the limit sent for a watched value: no usage reaches it
REPLAY_PER_CALL = 200


class Held:
    """A reservation: in Redis, in the local fallback counters (``local``), or neither
    (``detached``: served while Redis was unusable, its usage replayed later)."""

    __slots__ = ("id", "keys", "minute", "second", "cost_units", "tokens", "local", "detached")

    def __init__(
        self,
        id: str,
        keys: tuple[str, ...],
        minute: int,
        cost_units: int,
        tokens: int,
        *,
        second: int = 0,
        local: Any = None,
        detached: bool = False,
    ) -> None:
        self.id = id
        self.keys = keys
        self.minute = minute
        self.second = second  # its rate window's second in Redis; 0: none
        self.cost_units = cost_units
        self.tokens = tokens
        self.local = local
        self.detached = detached


class Replay:
    """Settles that Redis has not got yet, in order, each with its sequence number."""

    def __init__(self) -> None:
        self.entries: deque[tuple[int, tuple[Any, ...]]] = deque()
        self.dropped = 0

    def add(self, seq: int, args: tuple[Any, ...]) -> None:
        if len(self.entries) >= REPLAY_MAX:
            self.entries.popleft()
            self.dropped += 1
        self.entries.append((seq, args))

    def take(self, after: int = -1) -> list[tuple[Any, ...]]:
        """The settles numbered above ``after`` (those below are in the ledger read)."""
        entries, self.entries = self.entries, deque()
        return [args for seq, args in entries if seq > after]


class RedisStore:
    def __init__(
        self,
        link: Link,
        *,
        identity: str,
        instance: str,
        memory: UsageCounters,
        tz: str,
        keep_s: int,
        expiry_s: float,
        on_error: str,
        reload_local: Callable[[], Awaitable[UsageCounters]],
    ) -> None:
        self.link = link
        self.identity = identity
        self.instance = instance
        self.memory = MemoryStore(memory)
        self.mirror = RedisView(tz)
        self.keep_s = keep_s
        self.expiry_ms = int(expiry_s * 1000)
        self.on_error = on_error
        self.reload_local = reload_local
        self.local = False  # serving from the in-memory counters (on_redis_error = local)
        self.loaded = False  # this instance's ledger is in Redis's counters
        self.rebuilding = False
        self.rebuilds = 0
        self.gen: str | None = None
        self.seq = 0
        self.replay = Replay()
        self.orphans: list[str] = []  # admits cut off by a break: maybe reserved
        self.on_lost: Callable[[], None] = lambda: None  # set by the lifecycle: rebuild
        self._settles: list[tuple[int, tuple[Any, ...]]] = []
        self._prefix = f"{os.urandom(4).hex()}."
        self._ids = itertools.count(1)

    # --- CounterStore -----------------------------------------------------------------

    @property
    def view(self) -> UsageView:
        return self.memory.counters if self.local else self.mirror

    @property
    def state(self) -> str:
        """``redis``, ``local``, ``rebuilding`` or ``unavailable``."""
        if self.local:
            return "local"
        if self.link.up and self.loaded:
            return "redis"
        return "rebuilding" if self.rebuilding and self.link.up else "unavailable"

    async def admit(self, decision: Decision, hold: Hold) -> Any:
        if self.local:
            return await self._admit_locally(decision, hold)
        limits = _checked(decision, hold)
        if not (self.link.up and self.loaded):
            return self._unusable(limits, hold)
        keys = _keys(hold)
        now_ms = int(hold.now.timestamp() * 1000)
        rid = f"{self._prefix}{next(self._ids)}"
        units = to_units(hold.cost_usd)
        args = self._limit_args(limits, hold.now)
        try:
            reply = await self.link.script(
                "admit", self.identity, now_ms, self.keep_s, rid, now_ms + self.expiry_ms,
                units, hold.tokens, int(hold.rate), 1, len(keys), *keys, *args,
            )  # fmt: skip
        except RedisDown:
            # Written before the break, it may still run: released on recovery.
            self.orphans.append(rid)
            return self._unusable(limits, hold)
        if reply[0] == -1:
            self._lost()
            return self._unusable(limits, hold)
        self._learn(limits, reply)
        if reply[0] == 0:
            return STALE
        second = now_ms // 1000 if hold.rate else 0
        return Held(rid, keys, now_ms // 60000, units, hold.tokens, second=second)

    async def confirm(self, decision: Decision) -> Any:
        if self.local or decision.status == 403 or not (self.link.up and self.loaded):
            return None
        limits = _checked(decision, None)
        if not limits:
            return None
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        args = self._limit_args(limits, now)
        try:
            reply = await self.link.script(
                "admit", self.identity, now_ms, self.keep_s, "", 0, 0, 0, 0, 0, 0, *args
            )
        except RedisDown:
            return None
        if reply[0] == -1:
            self._lost()
            return None
        self._learn(limits, reply)
        return STALE if reply[0] == 0 else None

    def settle(
        self,
        reservation: Any,
        *,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | Decimal | None,
        now: datetime,
    ) -> None:
        """Queue the settle for this tick's one ``settle`` call (see ``_send_settles``)."""
        held: Held = reservation
        self.seq += 1
        if held.local is not None:
            self.memory.settle(
                held.local, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost_usd, now=now
            )
        args: tuple[Any, ...] = (held.id, held.minute, held.second, to_units(cost_usd))
        args += (tokens_in, tokens_out, len(held.keys), *held.keys)
        if self.local or not (self.link.up and self.loaded):
            self.replay.add(self.seq, args)  # sent when Redis is back (``send_replay``)
            return
        self._settles.append((self.seq, args))
        if len(self._settles) == 1:
            asyncio.get_running_loop().call_soon(self._send_settles)

    def _send_settles(self) -> None:
        """The settles of one loop tick as one script call: one command, one reply."""
        batch, self._settles = self._settles, []
        flat = [a for _, args in batch for a in args]
        fut = self.link.script("settle", self.identity, self.keep_s, *flat)
        fut.add_done_callback(lambda f: self._settled(f, batch))

    def release(self, reservation: Any) -> None:
        held: Held = reservation
        if held.local is not None:
            self.memory.release(held.local)
        elif not held.detached and self.link.up:
            self.link.script("release", held.id).add_done_callback(_quiet)

    async def refresh(
        self, user_id: str, group_id: str | None, windows: Iterable[str], now: datetime
    ) -> None:
        """Learn every metric of the user, group and member in ``windows`` (one call)."""
        if self.local or not (self.link.up and self.loaded):
            return
        keys = [subject_key(Subject("user", user_id))]
        if group_id:
            keys += [subject_key(Subject("group", group_id)), member_key(user_id, group_id)]
        items = [(k, w) for k in keys for w in windows]
        now_s = now.timestamp()
        args = [a for k, w in items for a in (k, w, self.mirror.clock.start(w, now_s, now))]
        try:
            reply = await self.link.script("read", int(now_s * 1000), self.keep_s, *args)
        except RedisDown:
            return
        for n, (key, window) in enumerate(items):
            c, i, o, r, pc, pt, pn = reply[7 * n : 7 * n + 7]
            values = {
                "cost_usd": (c + pc) / COST_SCALE,
                "tokens": float(i + o + pt),
                "input_tokens": float(i + pt),
                "output_tokens": float(o + pt),
                "requests": float(r + pn),
            }
            for metric, value in values.items():
                self.mirror.learn((key, window, metric), value)

    # --- recovery ------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Release the reservations (of any instance) past their expiry."""
        if not self.link.up:
            return 0
        released = await self.link.script("sweep", int(time.time() * 1000))
        return int(released)

    async def send_replay(self, after: int = -1) -> int:
        """Send the settles Redis has not got (numbered above ``after``)."""
        orphans, self.orphans = self.orphans, []
        for rid in orphans:
            self.link.script("release", rid).add_done_callback(_quiet)
        pending = self.replay.take(after)
        for i in range(0, len(pending), REPLAY_PER_CALL):
            chunk = pending[i : i + REPLAY_PER_CALL]
            flat = [a for args in chunk for a in args]
            try:
                await self.link.script("settle", self.identity, self.keep_s, *flat)
            except RedisDown:
                # Kept for the next recovery, numbered 0: their rows are in the ledger
                # by then, so a rebuild reads them instead.
                for args in pending[i:]:
                    self.replay.add(0, args)
                raise
        return len(pending)

    def go_local(self) -> None:
        if self.on_error != "local" or self.local:
            return
        self.local = True
        log.warning("redis: unreachable; counting on this instance's own counters until it is back")

    def _settled(self, fut: asyncio.Future[Any], batch: list[tuple[int, tuple[Any, ...]]]) -> None:
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None and fut.result() != -1:
            return
        for seq, args in batch:
            if err is not None and args[0]:  # it may have reached Redis before the break
                args = (f"?{args[0]}", *args[1:])
            self.replay.add(seq, args)
        if err is None:
            self._lost()
        elif not isinstance(err, RedisDown):
            log.error("redis: settling failed: %s", err)

    def _lost(self) -> None:
        """Redis no longer holds this instance's counters: rebuild them."""
        if self.loaded:
            log.warning("redis: the counters are gone (restarted or flushed); rebuilding")
        self.loaded = False
        self.on_lost()

    def _unusable(self, limits: list[tuple[Limit, str]], hold: Hold) -> Any:
        if self.on_error == "local" and not self.link.up:
            self.go_local()
            return STALE  # decide again from the local counters
        if limits:
            why = "being rebuilt" if self.link.up else "unreachable"
            raise ClusterUnavailable(f"the shared usage counters are {why}; retry shortly")
        return Held("", _keys(hold), int(hold.now.timestamp() // 60), to_units(hold.cost_usd),
                    hold.tokens, detached=True)  # fmt: skip

    async def _admit_locally(self, decision: Decision, hold: Hold) -> Any:
        local = await self.memory.admit(decision, hold)
        return Held("", _keys(hold), local.minute, local.cost_units, local.tokens, local=local)

    # --- limits to and from the script ------------------------------------------------------

    def _limit_args(self, limits: list[tuple[Limit, str]], now: datetime) -> list[Any]:
        args: list[Any] = []
        now_s = now.timestamp()
        for lim, key in limits:
            rate = lim.metric in RATE_METRICS
            start = 0 if rate else self.mirror.clock.start(lim.window, now_s, now)
            expected = 1 if lim.used >= lim.limit else 0
            args += (key, lim.window, start, lim.metric, float(lim.limit), expected)
        return args

    def _learn(self, limits: list[tuple[Limit, str]], reply: list[Any]) -> None:
        for n, (lim, key) in enumerate(limits):
            value, aux = reply[1 + 2 * n], reply[2 + 2 * n]
            metric = lim.metric
            if metric in RATE_METRICS:
                r = self.mirror.rates.setdefault(key, [0, 0, 0, 0])
                r[RATE_METRICS.index(metric)] = value
                if aux:
                    r[3] = aux / 1000
            else:
                used = value / COST_SCALE if metric == "cost_usd" else float(value)
                self.mirror.learn((key, lim.window, metric), used)


def _keys(hold: Hold) -> tuple[str, ...]:
    keys = tuple(subject_key(s) for s in hold.subjects)
    if hold.user_id and hold.group_id:
        keys += (member_key(hold.user_id, hold.group_id),)
    return keys


def _names(subjects: tuple[Subject, ...]) -> dict[str, str]:
    """Redis keys by the subject text a ``Limit`` names (``user:alice in group:acme``)."""
    names = {str(s): subject_key(s) for s in subjects}
    users = [s for s in subjects if s.kind == "user"]
    groups = [s for s in subjects if s.kind == "group"]
    for u in users:
        for g in groups:
            names[f"{u} in {g}"] = member_key(u.id, g.id)
    return names


def _checked(decision: Decision, hold: Hold | None) -> list[tuple[Limit, str]]:
    """The decision's limits whose side the script must confirm, with their Redis key.

    A cost limit of an unpriced request that ``unpriced_blocks`` refuses is left out:
    that verdict does not depend on the counters."""
    if not decision.limits and not decision.rate_limits and not decision.watched:
        return []
    names = _names(decision.subjects)
    out = []
    for lim in (*decision.limits, *decision.rate_limits):
        key = names.get(lim.subject)
        if key is not None and (lim.metric != "cost_usd" or hold is None or not hold.unpriced):
            out.append((lim, key))
    for subject, metric, *windows in decision.watched:
        # No limit: one no usage reaches, so the script only sends the value back.
        for window in windows:
            watched = Limit(None, "watched", str(subject), metric, window, 0.0, UNREACHED)
            out.append((watched, subject_key(subject)))
    return out


def _quiet(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
