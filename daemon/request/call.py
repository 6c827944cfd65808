"""One proxied request from arrival to its ledger row.

A ``Call`` carries the ledger record being built, the timings, the policy decision and
the counter reservation.  ``finish()`` runs exactly once, whatever happened (success,
refusal, provider failure, client hang-up): it settles the reservation, stamps the
timings and submits the row, so every request gets its ledger row.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.state import ALERTS, CONFIG, LEDGER, OBSERVER, STORE, Snapshot
from waystone_cli.core.alerts import NO_CHARGE, Charge
from waystone_cli.core.budget import budget_headers
from waystone_cli.core.counters import COST_SCALE
from waystone_cli.core.entities import Entity
from waystone_cli.core.errors import PolicyBlocked, WaystoneError
from waystone_cli.core.records import RequestRecord
from waystone_cli.core.usage import Usage

if TYPE_CHECKING:
    from daemon.telemetry.tracing import RequestTrace
    from waystone_cli.core.policy import Decision

log = logging.getLogger("waystone.daemon")
_combine = datetime.combine

# Request ids: "req_" and 24 hex digits of os.urandom, read for IDS_PER_READ ids at once.
# One getrandom() call per request costs far more in a busy gateway than in a loop.
IDS_PER_READ = 256
_ids: Iterator[str] = iter(())


def new_request_id() -> str:
    global _ids
    ident = next(_ids, None)  # a list iterator's next() is atomic under the GIL
    if ident is None:
        pool = os.urandom(12 * IDS_PER_READ).hex()
        fresh = [f"req_{pool[i : i + 24]}" for i in range(0, len(pool), 24)]
        ident, _ids = fresh[0], iter(fresh[1:])
    return ident


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

_OUTCOME_BY_CODE = {
    "invalid_api_key": "unauthorized",
    "model_not_found": "not_found",
    "rate_limited": "rate_limited",
    "quota_exceeded": "blocked",
    "blocked": "blocked",
    "upstream_error": "upstream_error",
    "upstream_timeout": "upstream_timeout",
}


class Call:
    __slots__ = (
        "request",
        "app",
        "snapshot",
        "started",
        "upstream_s",
        "first_byte_s",
        "now",
        "record",
        "decision",
        "reservation",
        "usage",
        "input_content",
        "output_text",
        "entities",
        "rate_headers",
        "_finished",
        "trace",
        "authenticated",
        "recorded",
    )

    def __init__(self, request: web.Request, route: str) -> None:
        self.request = request
        self.app = app = request.app
        self.snapshot: Snapshot = app[CONFIG].current
        self.started = time.perf_counter()
        self.upstream_s = 0.0
        self.first_byte_s: float | None = None
        self.now = now = datetime.now(UTC)
        # The naive UTC time stamp: combine() skips the keyword parsing of
        # ``now.replace(tzinfo=None)``, which costs several times more.
        ts = _combine(now.date(), now.time())
        self.record = RequestRecord(id=new_request_id(), ts=ts, route=route)
        self.decision: Decision | None = None
        self.reservation: Any = None
        self.usage: Usage | None = None
        self.input_content: Any = None
        self.output_text: str | None = None
        self.entities: tuple[Entity | None, Entity | None] = (None, None)
        self.rate_headers: Mapping[str, str] = _NO_HEADERS
        self._finished = False
        # Set once the request showed a valid gateway key (or none is needed): only the
        # rows of requests refused before that may be dropped (``daemon/request/refusals.py``).
        self.authenticated = False
        self.recorded = True
        # None unless tracing is on: the request path then skips every tracing step.
        self.trace: RequestTrace | None = app[OBSERVER].start_trace(self.record, request.headers)

    # --- timings -------------------------------------------------------------------

    def overhead_ms(self) -> float:
        """The gateway's own time so far: elapsed minus time spent waiting on upstream."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_s) * 1000)

    def mark_first_byte(self) -> None:
        if self.first_byte_s is None:
            self.first_byte_s = time.perf_counter() - self.started

    def response_headers(self, content_type: str) -> dict[str, str]:
        """The answer's headers: its Content-Type, then the x-waystone-* ones."""
        rec = self.record
        headers = {"Content-Type": content_type, "x-waystone-request-id": rec.id}
        if rec.provider and rec.model:
            headers["x-waystone-model"] = f"{rec.provider}/{rec.model}"
        headers["x-waystone-rulesets"] = ",".join(rec.rulesets)
        headers["x-waystone-overhead-ms"] = f"{self.overhead_ms():.2f}"
        headers.update(self.rate_headers)
        if self.decision is not None and self.decision.limits:
            headers.update(self.budget_headers())
        return headers

    def budget_headers(self) -> dict[str, str]:
        """``x-waystone-budget-*``: this request's own cost counted when it is known
        (its usage was read), else its reservation (a stream's headers go out first);
        nothing for a refusal or a provider error, which are charged nothing."""
        assert self.decision is not None
        rec = self.record
        if self.usage is not None:
            own = float(rec.cost_usd) if rec.cost_usd is not None else 0.0
        elif self.reservation is not None and rec.status in (0, 200):
            own = self.reservation.cost_units / COST_SCALE
        else:
            own = 0.0
        return budget_headers(
            self.decision,
            self.app[STORE].view,
            self.snapshot.config,
            own_cost_usd=own,
            now=self.now,
        )

    # --- outcome -------------------------------------------------------------------

    def set_usage(self, usage: Usage | None, *, estimated: bool = False) -> None:
        self.usage = usage
        rec = self.record
        if usage is None:
            return
        rec.input_tokens = usage.input_tokens
        rec.output_tokens = usage.output_tokens
        rec.cached_tokens = usage.cached_tokens
        rec.cache_write_tokens = usage.cache_write_tokens
        rec.reasoning_tokens = usage.reasoning_tokens
        rec.audio_tokens = usage.audio_tokens
        rec.usage_estimated = estimated
        if rec.provider and rec.model:
            cost = self.snapshot.pricer.cost(rec.provider, rec.model, usage)
            rec.cost_usd = cost
            # Unpriced means tokens used at an unknown price: nothing used, nothing unknown.
            rec.priced = cost is not None or not (usage.input_tokens or usage.output_tokens)

    def fail(self, err: BaseException) -> None:
        rec = self.record
        if isinstance(err, WaystoneError):
            rec.status = err.status
            rec.error = err.message
            rec.outcome = _OUTCOME_BY_CODE.get(
                err.code or "", "invalid_request" if err.status < 500 else "error"
            )
            if isinstance(err, PolicyBlocked):
                rec.outcome = "rate_limited" if err.code == "rate_limited" else "blocked"
        else:
            rec.status = 500
            rec.outcome = "error"
            rec.error = f"internal error: {type(err).__name__}"

    def finish(self) -> None:
        """Settle, queue the row and report the request; never raises.

        It runs after the answer was decided (often after the provider answered 200),
        so a failing step is logged, with its traceback, and the next steps still run:
        whatever goes wrong, the row is queued.
        """
        if self._finished:
            return
        self._finished = True
        steps = (self._stamp, self._alert, self._settle, self._admit, self._submit, self._report)
        for step in steps:
            try:
                step()
            except Exception:
                log.exception(
                    "request %s: finishing it failed in %s", self.record.id, step.__name__
                )

    def _stamp(self) -> None:
        rec = self.record
        rec.latency_ms = (time.perf_counter() - self.started) * 1000
        rec.overhead_ms = self.overhead_ms()
        if self.first_byte_s is not None:
            rec.ttft_ms = self.first_byte_s * 1000
        if rec.capture:
            rec.content_input = self.input_content
            rec.content_output = self.output_text

    def _admit(self) -> None:
        if not self.authenticated:
            admit = self.app[OBSERVER].refused_rows.admit
            self.recorded = admit(self.request.remote or "", self.record.outcome, time.time())

    def _submit(self) -> None:
        if self.recorded:
            self.app[LEDGER].submit(self.record)

    def _report(self) -> None:
        observer = self.app[OBSERVER]
        if self.recorded:
            observer.request_done(
                self.record, self.snapshot.config, self.trace, self.usage is not None
            )
        else:
            observer.request_unrecorded(self.record, self.snapshot.config)

    def _alert(self) -> None:
        """Hand the alerts what this request crossed (before ``_settle``, which drops the
        reservation that says whether the request is charged); never awaits."""
        rec, decision = self.record, self.decision
        if (decision is None or not (decision.limits or decision.spikes)) and rec.priced:
            return  # nothing a webhook could hear of
        alerts = self.snapshot.config.alerts
        if alerts.webhook is None:
            return
        outbox, tz = self.app[ALERTS], self.snapshot.config.server.timezone
        if decision is not None:
            if decision.limits:
                if self.reservation is None:
                    charge = NO_CHARGE
                else:
                    cost = float(rec.cost_usd) if rec.cost_usd is not None else 0.0
                    charge = Charge(cost, rec.input_tokens, rec.output_tokens, 1)
                outbox.thresholds(decision.limits, alerts.thresholds, charge, tz=tz, now=self.now)
            for hit in decision.spikes:
                outbox.spike(hit, self.now, tz=tz)
        if not rec.priced and rec.provider and rec.model:
            outbox.unpriced(rec.provider, rec.model, self.now)

    def _settle(self) -> None:
        reservation, self.reservation = self.reservation, None
        if reservation is None:
            return
        rec = self.record
        self.app[STORE].settle(
            reservation,
            tokens_in=rec.input_tokens,
            tokens_out=rec.output_tokens,
            cost_usd=float(rec.cost_usd) if rec.cost_usd is not None else None,
            now=self.now,  # only for pruning buckets a month old: the start will do
        )
