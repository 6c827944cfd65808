"""What the daemon tells operators about each request: a log line, metrics and a trace.

``Observer.start_trace`` is called when a ``Call`` begins and ``Observer.request_done``
once when it finishes (by ``Call.finish``); ``provider_failed`` wherever an upstream
call fails.  The log line is one per request at info, text (``key=value``) or JSON,
with the request id, route, user, group, model, status, outcome, tokens, cost and
latency.  Never a provider key; never content (only traces of captured requests carry
content, see ``daemon/tracing.py``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from daemon.logs import write_direct
from daemon.metrics import LedgerGauges, Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from daemon.call import Call
    from daemon.spans import RequestTrace, Tracing

log = logging.getLogger("waystone.request")


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

    def start_trace(self, call: Call) -> RequestTrace | None:
        tracing = self.tracing
        return None if tracing is None else tracing.start(call)

    def provider_failed(self, provider: str, message: str) -> None:
        self.provider_errors[provider] = ProviderError(message, datetime.now(UTC))
        self.metrics.provider_failed(provider)

    def request_done(self, call: Call) -> None:
        self.metrics.observe(call)
        if call.trace is not None:
            call.trace.end(call)
        if log.isEnabledFor(logging.INFO):
            line = self.log_line(call)
            # A JSON line is already a whole record: the JSON formatter prints it as is.
            json_record = self.log_format == "json"
            if not write_direct(log, line, json_record=json_record):
                log.info(line, extra={"json_record": json_record})

    def log_line(self, call: Call) -> str:
        rec = call.record
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
