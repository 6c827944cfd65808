"""What the daemon tells operators about each finished request: one log line.

Metrics and traces hook in here too (``Observer.request_done`` is called once per
request by ``Call.finish``).  Never a provider key; content only where captured.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.call import Call

log = logging.getLogger("waystone.request")


class Observer:
    def __init__(self, log_format: str = "text") -> None:
        self.log_format = log_format

    def request_done(self, call: Call) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        rec = call.record
        fields = {
            "request_id": rec.id,
            "route": rec.route,
            "user": rec.user_id,
            "group": rec.group_id,
            "model": f"{rec.provider}/{rec.model}" if rec.provider and rec.model else None,
            "status": rec.status,
            "outcome": rec.outcome,
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "cost_usd": float(rec.cost_usd) if rec.cost_usd is not None else None,
            "latency_ms": round(rec.latency_ms or 0.0, 2),
        }
        if self.log_format == "json":
            log.info(json.dumps(fields))
        else:
            log.info(" ".join(f"{k}={'-' if v is None else v}" for k, v in fields.items()))
