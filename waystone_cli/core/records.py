"""The ledger row of one request, as the daemon builds it and the writer stores it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

OUTCOMES = (
    "ok",
    "blocked",
    "rate_limited",
    "invalid_request",
    "unauthorized",
    "not_found",
    "upstream_error",
    "upstream_timeout",
    "client_closed",
    "upstream_cut",
    "flagged",
)


@dataclass(slots=True)  # one per request: slots make it cheaper to build and read
class RequestRecord:
    """One row of ``requests``; field names are the column names."""

    id: str
    ts: datetime  # naive UTC
    route: str
    status: int = 0
    outcome: str = "ok"
    user_id: str | None = None
    group_id: str | None = None
    provider: str | None = None
    requested_model: str | None = None
    model: str | None = None
    stream: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    cost_usd: Decimal | None = None
    priced: bool = True
    latency_ms: float | None = None
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    rulesets: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    usage_estimated: bool = False
    retain_days: int | None = None
    error: str | None = None
    flagged: bool = False  # a ``flag`` rule fired
    # Not columns of `requests`: side tables the writer keeps current.
    user_metadata: dict[str, Any] | None = None
    group_metadata: dict[str, Any] | None = None
    content_input: Any = None
    content_output: str | None = None
    capture: bool = False


REQUEST_COLUMNS = (
    "id",
    "ts",
    "user_id",
    "group_id",
    "provider",
    "requested_model",
    "model",
    "route",
    "stream",
    "status",
    "outcome",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "audio_tokens",
    "cost_usd",
    "priced",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "rulesets",
    "rules",
    "datasets",
    "usage_estimated",
    "retain_days",
    "error",
    "flagged",
)
