"""Prometheus metrics: what ``GET /metrics`` shows, and how one finished request feeds it.

Every app gets its own ``CollectorRegistry`` (never prometheus-client's global one), so
tests can build many apps side by side and a reload never re-registers a metric.

Label choices:

- requests by ``route``, ``status`` and ``outcome``; tokens, cost and unpriced requests
  by ``provider`` and ``model`` (the model actually called, after rules and fallbacks);
- latency and overhead histograms by ``route``; time to first token only for streams,
  the only place where it differs from latency;
- blocks by ``ruleset`` and ``rule``: the fired ``block`` rules of a refused request
  (else its ``check_output`` rules; a refusal by entity credits counts as rule
  ``credits`` with an empty ruleset);
- ledger queue depth and last flush time are read from the writer at scrape time;
- per-user series (``waystone_user_*``) only while ``[server] metrics_user_labels`` is
  true, for at most ``metrics_user_label_limit`` distinct users; the rest are summed
  under ``user="_other"``.  Requests naming no user are not in the per-user series.
  Both settings are read from the config in force, so a reload turns them on or off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from daemon.call import Call
    from waystone_cli.core.config import Config
    from waystone_cli.core.records import RequestRecord

OTHER_USERS = "_other"
_BLOCK_OUTCOMES = frozenset({"blocked", "rate_limited"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own time is sub-millisecond when all is well: buckets start at 100 µs.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class LedgerGauges(Protocol):
    """What the metrics read from the ledger writer at scrape time."""

    @property
    def depth(self) -> int: ...

    last_flush_ms: float | None


class Metrics:
    """The daemon's metrics, registered in a registry of their own."""

    def __init__(self, ledger: Callable[[], LedgerGauges | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "waystone_requests", "Proxied requests.", ("route", "status", "outcome"), registry=r
        )
        self.tokens = Counter(
            "waystone_tokens", "Tokens by direction.", ("provider", "model", "type"), registry=r
        )
        self.cost = Counter(
            "waystone_cost_usd",
            "Cost in USD of priced requests.",
            ("provider", "model"),
            registry=r,
        )
        self.unpriced = Counter(
            "waystone_unpriced_requests",
            "Requests with usage but no known price.",
            ("provider", "model"),
            registry=r,
        )
        self.latency = Histogram(
            "waystone_request_duration_seconds",
            "Time from request arrival to the last byte relayed.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "waystone_time_to_first_token_seconds",
            "Time from request arrival to the first streamed byte sent to the client.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "waystone_gateway_overhead_seconds",
            "The gateway's own time: latency minus time spent waiting on the provider.",
            ("route",),
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.blocks = Counter(
            "waystone_blocks", "Requests refused by a rule.", ("ruleset", "rule"), registry=r
        )
        self.provider_errors = Counter(
            "waystone_provider_errors",
            "Provider calls that failed (unreachable, timed out, 429 or 5xx).",
            ("provider",),
            registry=r,
        )
        self.user_requests = Counter(
            "waystone_user_requests", "Requests per user (when enabled).", ("user",), registry=r
        )
        self.user_tokens = Counter(
            "waystone_user_tokens", "Tokens per user (when enabled).", ("user", "type"), registry=r
        )
        self.user_cost = Counter(
            "waystone_user_cost_usd", "Cost per user (when enabled).", ("user",), registry=r
        )
        self._users: set[str] = set()
        # Labelled children by (metric, labels): prometheus-client's labels() takes a lock
        # and rebuilds its key on every call, a measurable share of a request here.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r.register(_LedgerCollector(ledger))

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, call: Call) -> None:
        """Count one finished request."""
        rec = call.record
        self._child(self.requests, rec.route, str(rec.status), rec.outcome).inc()
        self._observe_usage(rec)
        if rec.latency_ms is not None:
            self._child(self.latency, rec.route).observe(rec.latency_ms / 1000)
        if rec.overhead_ms is not None:
            self._child(self.overhead, rec.route).observe(rec.overhead_ms / 1000)
        if rec.stream and rec.ttft_ms is not None:
            self._child(self.ttft, rec.route).observe(rec.ttft_ms / 1000)
        if rec.outcome in _BLOCK_OUTCOMES:
            for ruleset, rule in blocking_rules(call.snapshot.config, rec.rules):
                self._child(self.blocks, ruleset, rule).inc()
        server = call.snapshot.config.server
        if server.metrics_user_labels and rec.user_id is not None:
            self._observe_user(rec, self.user_label(rec.user_id, server.metrics_user_label_limit))

    def provider_failed(self, provider: str) -> None:
        self._child(self.provider_errors, provider).inc()

    def user_label(self, user_id: str, limit: int) -> str:
        """The user's own label while fewer than ``limit`` users have one, else ``_other``."""
        if user_id in self._users:
            return user_id
        if len(self._users) < limit:
            self._users.add(user_id)
            return user_id
        return OTHER_USERS

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _observe_usage(self, rec: RequestRecord) -> None:
        if rec.provider is None:
            return
        model = rec.model or ""
        if rec.input_tokens:
            self._child(self.tokens, rec.provider, model, "input").inc(rec.input_tokens)
        if rec.output_tokens:
            self._child(self.tokens, rec.provider, model, "output").inc(rec.output_tokens)
        if rec.cost_usd is not None:
            self._child(self.cost, rec.provider, model).inc(float(rec.cost_usd))
        elif not rec.priced:
            self._child(self.unpriced, rec.provider, model).inc()

    def _observe_user(self, rec: RequestRecord, user: str) -> None:
        self._child(self.user_requests, user).inc()
        if rec.input_tokens:
            self._child(self.user_tokens, user, "input").inc(rec.input_tokens)
        if rec.output_tokens:
            self._child(self.user_tokens, user, "output").inc(rec.output_tokens)
        if rec.cost_usd is not None:
            self._child(self.user_cost, user).inc(float(rec.cost_usd))


def blocking_rules(config: Config, fired: list[str]) -> list[tuple[str, str]]:
    """The ``(ruleset, rule)`` pairs that refused a request, out of all its fired rules.

    A refused request also lists the rules that fired beside the block (a capture, a
    model change), which did not refuse it.  Fired ``block`` rules refused it; failing
    that an output check did; failing both, the entity's own credits did.
    """
    pairs = [tuple(name.split("/", 1)) for name in fired if "/" in name]
    for action in ("block", "check_output"):
        found = [
            (ruleset, rule)
            for ruleset, rule in pairs
            if (cfg := config.rules.get(rule)) is not None and cfg.action == action
        ]
        if found:
            return found
    return [("", "credits")]


class _LedgerCollector(Collector):
    """Gauges read from the ledger writer when scraped, so they cost nothing per request."""

    def __init__(self, ledger: Callable[[], LedgerGauges | None]) -> None:
        self._ledger = ledger

    def collect(self) -> Iterator[Metric]:
        writer = self._ledger()
        depth = GaugeMetricFamily(
            "waystone_ledger_queue_depth", "Ledger rows submitted and not yet committed."
        )
        flush = GaugeMetricFamily(
            "waystone_ledger_last_flush_seconds", "Duration of the ledger's last batch write."
        )
        if writer is not None:
            depth.add_metric([], writer.depth)
            if writer.last_flush_ms is not None:
                flush.add_metric([], writer.last_flush_ms / 1000)
        yield depth
        yield flush

    def describe(self) -> Iterator[Metric]:
        # Describing without collecting keeps registration from touching the writer,
        # which does not exist yet when the app is built.
        yield GaugeMetricFamily("waystone_ledger_queue_depth", "")
        yield GaugeMetricFamily("waystone_ledger_last_flush_seconds", "")


async def metrics_handler(request: web.Request) -> web.Response:
    # Imported here: daemon.state names the Observer, whose module imports this one.
    from daemon.state import OBSERVER

    body = request.app[OBSERVER].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
