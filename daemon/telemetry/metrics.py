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
- ledger queue depth, last flush time and rows rejected (set aside, not stored) are read
  from the writer at scrape time;
- a finished request adds to plain dictionaries; the Prometheus families are built from
  them only when ``/metrics`` is scraped (prometheus-client's own labelled metrics take
  a lock and build a key per call: several per cent of a request's CPU here).  So the
  counters have no ``_created`` samples;
- per-user series (``waystone_user_*``) only while ``[server] metrics_user_labels`` is
  true, for at most ``metrics_user_label_limit`` distinct users; the rest are summed
  under ``user="_other"``.  Requests naming no user are not in the per-user series.
  Both settings are read from the config in force, so a reload turns them on or off.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from waystone_cli.core.config import Config
    from waystone_cli.core.records import RequestRecord

OTHER_USERS = "_other"
_BLOCK_OUTCOMES = frozenset({"blocked", "rate_limited"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own time is sub-millisecond when all is well: buckets start well below.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

Labels = tuple[str, ...]
_FLOAT_MAX = sys.float_info.max


class LedgerGauges(Protocol):
    """What the metrics read from the ledger writer at scrape time."""

    @property
    def depth(self) -> int: ...

    last_flush_ms: float | None

    @property
    def rejected(self) -> int: ...


@dataclass
class _Counter:
    """A labelled counter: plain numbers by label values, rendered when scraped."""

    name: str
    doc: str
    labels: Labels
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Labels, amount: float = 1) -> None:
        values = self.values
        # A count beyond a float (junk usage) saturates: it must not fail a request or
        # a scrape (an int that large cannot even be added to a float).
        total = values.get(labels, 0) + (amount if amount < _FLOAT_MAX else _FLOAT_MAX)
        values[labels] = total if total < _FLOAT_MAX else _FLOAT_MAX

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric(labels, value)
        return family


@dataclass
class _Histogram:
    """A labelled histogram: per label values, a count per bucket (not cumulative) and
    the sum; an observation costs one bisect."""

    name: str
    doc: str
    labels: Labels
    bounds: tuple[float, ...]
    series: dict[Labels, tuple[list[int], list[float]]] = field(default_factory=dict)

    def observe(self, labels: Labels, value: float) -> None:
        entry = self.series.get(labels)
        if entry is None:
            entry = self.series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        entry[0][bisect_left(self.bounds, value)] += 1
        entry[1][0] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        for labels, (counts, total) in self.series.items():
            running, buckets = 0, []
            for edge, count in zip(edges, counts, strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric(labels, buckets, total[0])
        return family


class Metrics:
    """The daemon's metrics.

    A finished request only adds to plain dictionaries (a few microseconds); the
    Prometheus families are built from them when ``/metrics`` is scraped, by
    prometheus-client's own exposition code.  Every app has its own
    ``CollectorRegistry`` (never the global one), so tests can build many apps side by
    side.  Everything runs on the event loop's thread, so nothing needs a lock.
    """

    def __init__(self, ledger: Callable[[], LedgerGauges | None]) -> None:
        self.requests = _Counter(
            "waystone_requests", "Proxied requests.", ("route", "status", "outcome")
        )
        self.tokens = _Counter(
            "waystone_tokens", "Tokens by direction.", ("provider", "model", "type")
        )
        self.cost = _Counter(
            "waystone_cost_usd", "Cost in USD of priced requests.", ("provider", "model")
        )
        self.unpriced = _Counter(
            "waystone_unpriced_requests",
            "Requests with usage but no known price.",
            ("provider", "model"),
        )
        self.latency = _Histogram(
            "waystone_request_duration_seconds",
            "Time from request arrival to the last byte relayed.",
            ("route",),
            _LATENCY_BUCKETS,
        )
        self.ttft = _Histogram(
            "waystone_time_to_first_token_seconds",
            "Time from request arrival to the first streamed byte sent to the client.",
            ("route",),
            _LATENCY_BUCKETS,
        )
        self.overhead = _Histogram(
            "waystone_gateway_overhead_seconds",
            "The gateway's own time: latency minus time spent waiting on the provider.",
            ("route",),
            _OVERHEAD_BUCKETS,
        )
        self.blocks = _Counter(
            "waystone_blocks", "Requests refused by a rule.", ("ruleset", "rule")
        )
        self.provider_errors = _Counter(
            "waystone_provider_errors",
            "Provider calls that failed (unreachable, timed out, 429 or 5xx).",
            ("provider",),
        )
        self.request_errors = _Counter(
            "waystone_request_errors",
            "Malformed requests and unexpected errors, by exception type "
            "(each cause's traceback is logged once).",
            ("cause",),
        )
        self.refused_rows_dropped = _Counter(
            "waystone_refused_rows_dropped",
            "Ledger rows of refused unauthenticated requests not written "
            "(rate-limited per address and cause).",
            ("cause",),
        )
        self.user_requests = _Counter(
            "waystone_user_requests", "Requests per user (when enabled).", ("user",)
        )
        self.user_tokens = _Counter(
            "waystone_user_tokens", "Tokens per user (when enabled).", ("user", "type")
        )
        self.user_cost = _Counter(
            "waystone_user_cost_usd", "Cost per user (when enabled).", ("user",)
        )
        self.alerts = _Counter(
            "waystone_alerts",
            "Alert events by type: queued (stored, to deliver), delivered, failed attempts.",
            ("type", "state"),
        )
        self._users: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_RequestCollector(self))
        self.registry.register(_LedgerCollector(ledger))

    def families(self) -> Iterator[_Counter | _Histogram]:
        yield from (self.requests, self.tokens, self.cost, self.unpriced)
        yield from (self.latency, self.ttft, self.overhead, self.blocks, self.provider_errors)
        yield from (self.request_errors, self.refused_rows_dropped, self.alerts)
        yield from (self.user_requests, self.user_tokens, self.user_cost)

    def observe(self, rec: RequestRecord, config: Config) -> None:
        """Count one finished request (``config``: the one it ran under)."""
        route = (rec.route,)
        self.requests.inc((rec.route, str(rec.status), rec.outcome))
        self._observe_usage(rec)
        if rec.latency_ms is not None:
            self.latency.observe(route, rec.latency_ms / 1000)
        if rec.overhead_ms is not None:
            self.overhead.observe(route, rec.overhead_ms / 1000)
        if rec.stream and rec.ttft_ms is not None:
            self.ttft.observe(route, rec.ttft_ms / 1000)
        if rec.outcome in _BLOCK_OUTCOMES:
            for ruleset, rule in blocking_rules(config, rec.rules):
                self.blocks.inc((ruleset, rule))
        server = config.server
        if server.metrics_user_labels and rec.user_id is not None:
            self._observe_user(rec, self.user_label(rec.user_id, server.metrics_user_label_limit))

    def provider_failed(self, provider: str) -> None:
        self.provider_errors.inc((provider,))

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
            self.tokens.inc((rec.provider, model, "input"), rec.input_tokens)
        if rec.output_tokens:
            self.tokens.inc((rec.provider, model, "output"), rec.output_tokens)
        if rec.cost_usd is not None:
            self.cost.inc((rec.provider, model), float(rec.cost_usd))
        elif not rec.priced:
            self.unpriced.inc((rec.provider, model))

    def _observe_user(self, rec: RequestRecord, user: str) -> None:
        self.user_requests.inc((user,))
        if rec.input_tokens:
            self.user_tokens.inc((user, "input"), rec.input_tokens)
        if rec.output_tokens:
            self.user_tokens.inc((user, "output"), rec.output_tokens)
        if rec.cost_usd is not None:
            self.user_cost.inc((user,), float(rec.cost_usd))


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


class _RequestCollector(Collector):
    """The per-request counters and histograms, as Prometheus families when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for family in self._metrics.families():
            yield family.family()


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
        rejected = CounterMetricFamily(
            "waystone_ledger_rows_rejected",
            "Ledger rows set aside in the rejected file: values the ledger cannot store.",
        )
        if writer is not None:
            depth.add_metric([], writer.depth)
            if writer.last_flush_ms is not None:
                flush.add_metric([], writer.last_flush_ms / 1000)
            rejected.add_metric([], writer.rejected)
        yield depth
        yield flush
        yield rejected

    def describe(self) -> Iterator[Metric]:
        # Describing without collecting keeps registration from touching the writer,
        # which does not exist yet when the app is built.
        yield GaugeMetricFamily("waystone_ledger_queue_depth", "")
        yield GaugeMetricFamily("waystone_ledger_last_flush_seconds", "")
        yield CounterMetricFamily("waystone_ledger_rows_rejected", "")
