"""What the daemon tells operators about each request: a log line, metrics and a trace.

``Observer.start_trace`` is called when a ``Call`` begins and ``Observer.request_done``
once when it finishes (by ``Call.finish``); ``provider_failed`` wherever an upstream
call fails.  The log line is one per request at info, text (``key=value``) or JSON,
with the request id, route, user, group, model, status, outcome, tokens, cost and
latency.  Never a provider key; never content (only traces of captured requests carry
content, see ``daemon/telemetry/tracing.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from daemon.request.refusals import RefusedRows
from daemon.telemetry.error_log import CauseLog
from daemon.telemetry.logs import direct_handler, write_direct
from daemon.telemetry.metrics import LedgerGauges, Metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from daemon.telemetry.spans import RequestTrace, Tracing
    from waystone_cli.core.config import Config
    from waystone_cli.core.records import RequestRecord

log = logging.getLogger("waystone.request")


# Finished requests wait for their metrics and log line at most this long, or until this
# many are waiting (``Observer.request_done``).
BATCH_S = 0.05
BATCH_SIZE = 64


class _Done(NamedTuple):
    record: RequestRecord
    config: Config
    at: float  # time.time() when the request finished: its log line's time


@dataclass(frozen=True)
class ProviderError:
    """A provider's most recent failure, as ``/readyz`` reports it."""

    message: str
    at: datetime


class Observer:
    def __init__(
        self,
        log_format: str = "text",
        ledger: Callable[[], LedgerGauges | None] = lambda: None,
    ) -> None:
        self.log_format = log_format
        self.metrics = Metrics(ledger)
        # Set by ``tracing_ctx`` while the app runs with ``[otel] endpoint``.
        self.tracing: Tracing | None = None
        self.provider_errors: dict[str, ProviderError] = {}
        count_error = self.count_error
        # aiohttp's own (a malformed request) and the daemon's unexpected errors.
        self.server_log = CauseLog(logging.getLogger("aiohttp.server"), count_error)
        self.error_log = CauseLog(logging.getLogger("waystone.daemon"), count_error)
        self.refused_rows = RefusedRows(self.count_dropped_row)
        self._pending: list[_Done] = []
        self._timer: asyncio.TimerHandle | None = None

    def start_trace(self, record: RequestRecord, headers: Mapping[str, str]) -> RequestTrace | None:
        tracing = self.tracing
        return None if tracing is None else tracing.start(record, headers)

    def provider_failed(self, provider: str, message: str) -> None:
        self.provider_errors[provider] = ProviderError(message, datetime.now(UTC))
        self.metrics.provider_failed(provider)

    def count_error(self, cause: str) -> None:
        self.metrics.request_errors.inc((cause,))

    def count_dropped_row(self, cause: str) -> None:
        self.metrics.refused_rows_dropped.inc((cause,))

    def request_unrecorded(self, record: RequestRecord, config: Config) -> None:
        """Count a finished request whose row was dropped (``RefusedRows``): no log line
        and no trace, which the summary warning stands for."""
        self.metrics.observe(record, config)

    def request_done(
        self, record: RequestRecord, config: Config, trace: RequestTrace | None, has_usage: bool
    ) -> None:
        """Count a finished request in the metrics and write its log line.

        Both are done for a batch of requests at a time, up to ``BATCH_SIZE`` of them and
        at most ``BATCH_S`` after the first: one request's bookkeeping alone runs cold in
        the CPU's caches (several times the CPU of the same work done in a loop), a batch
        runs warm.  ``/metrics`` flushes the batch before it
        renders, the app's last cleanup flushes what is left, and each log line keeps its
        request's own time.  While anything besides the daemon's own handler could see
        the log records (a test's ``caplog``, a host application's logging: checked as a
        batch starts), each request is done at once.
        """
        if trace is not None:
            trace.end(record, config, has_usage)
        pending = self._pending
        pending.append(_Done(record, config, time.time()))
        if len(pending) == 1:  # a new batch: may it wait?
            if self._can_wait():
                self._timer = asyncio.get_running_loop().call_later(BATCH_S, self.flush)
            else:
                self.flush()
        elif len(pending) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        """Count and log the finished requests still waiting (see ``request_done``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        done, self._pending = self._pending, []
        if not done:
            return
        for record, config, _ in done:
            self.metrics.observe(record, config)
        if log.isEnabledFor(logging.INFO):
            lines = [(at, self.log_line(record)) for record, _, at in done]
            # A JSON line is already a whole record: the JSON formatter prints it as is.
            json_record = self.log_format == "json"
            if not write_direct(log, lines, json_record=json_record):
                for _, line in lines:
                    log.info(line, extra={"json_record": json_record})

    def _can_wait(self) -> bool:
        return (
            not log.isEnabledFor(logging.INFO)
            or direct_handler(log, json_record=self.log_format == "json") is not None
        )

    def log_line(self, rec: RequestRecord) -> str:
        model = f"{rec.provider}/{rec.model}" if rec.provider and rec.model else None
        cost = float(rec.cost_usd) if rec.cost_usd is not None else None
        latency = round(rec.latency_ms or 0.0, 2)
        if self.log_format == "json":
            return json.dumps(
                {
                    "request_id": rec.id,
                    "route": rec.route,
                    "user": rec.user_id,
                    "group": rec.group_id,
                    "model": model,
                    "status": rec.status,
                    "outcome": rec.outcome,
                    "input_tokens": rec.input_tokens,
                    "output_tokens": rec.output_tokens,
                    "cost_usd": cost,
                    "latency_ms": latency,
                }
            )
        return (
            f"request_id={rec.id} route={rec.route} user={_text(rec.user_id)} "
            f"group={_text(rec.group_id)} model={_text(model)} status={rec.status} "
            f"outcome={rec.outcome} input_tokens={rec.input_tokens} "
            f"output_tokens={rec.output_tokens} cost_usd={_text(cost)} latency_ms={latency}"
        )


def _text(value: object) -> object:
    return "-" if value is None else value
