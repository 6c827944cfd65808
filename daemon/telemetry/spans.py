"""Recording spans: the request path's side of tracing (see ``daemon/telemetry/tracing.py``).

This module imports OpenTelemetry at the top and is itself imported only when tracing
is on.  The request path only notes what a span needs (ids, times, the finished
request's record) and queues the finished ``RequestTrace``; the exporting thread
encodes it, with its upstream CLIENT spans, straight to OTLP bytes
(``daemon/telemetry/otlp.py``) in batches of a thousand requests.  No SDK span object is built:
the SDK's ``ReadableSpan``, batch processor and encoder cost too much of a request, and
encoding in one tight loop per batch costs
less than encoding each request between the others' work.  A queued trace holds the
request's ``RequestRecord``, which nothing changes once the request has finished (the
ledger writer reads it from its thread too).

Ids come from the SDK's ``RandomIdGenerator``, and an incoming ``traceparent`` is read
by its ``TraceContextTextMapPropagator``; a caller's unsampled ``traceparent`` is
respected (nothing recorded, the header goes upstream unchanged).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from daemon.telemetry.otlp import CLIENT, ERROR, SERVER, UNSET, SpanEncoder
from daemon.telemetry.span_export import SpanBatcher
from waystone_cli.core.secrets import strip_credentials

if TYPE_CHECKING:
    from daemon.providers.upstream import UpstreamReply
    from waystone_cli.core.config import Config, ProviderConfig
    from waystone_cli.core.records import RequestRecord
    from waystone_cli.core.secrets import Redactor

# GenAI ``gen_ai.operation.name`` per route; routes the conventions do not name keep
# a descriptive name of their own.
OPERATIONS = {
    "chat/completions": "chat",
    "responses": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "moderations": "moderation",
    "audio/transcriptions": "transcription",
}
_UNTRACED_ROUTES = frozenset({"models", "metrics"})


class Tracing:
    """What the request path needs to record spans, and the batcher that sends them."""

    def __init__(self, batcher: SpanBatcher, exporter: SpanExporter) -> None:
        self.batcher = batcher  # it holds the encoder: the request path does not encode
        self.exporter = exporter  # the SDK's, whose HTTP client the batcher sends with
        self.ids = RandomIdGenerator()
        self.propagator = TraceContextTextMapPropagator()

    def shutdown(self) -> None:
        """Send what is queued, then close the exporter (blocks while it posts)."""
        self.batcher.shutdown()
        self.exporter.shutdown()

    def start(self, rec: RequestRecord, headers: Mapping[str, str]) -> RequestTrace | None:
        if rec.route in _UNTRACED_ROUTES:
            return None
        trace = RequestTrace(self, OPERATIONS.get(rec.route, rec.route))
        if "traceparent" in headers:
            parent = get_current_span(self.propagator.extract(headers)).get_span_context()
            if parent.is_valid:
                if not parent.trace_flags.sampled:  # the caller chose not to sample:
                    return None  # its traceparent goes upstream as is
                trace.trace_id = parent.trace_id
                trace.parent_id = parent.span_id
                trace.parent_remote = parent.is_remote
                trace.trace_state = parent.trace_state.to_header() or None
        return trace


class RequestTrace:
    """The SERVER span of one proxied request and its upstream attempts' CLIENT spans;
    queued for export when the request finishes."""

    __slots__ = (
        "tracing",
        "operation",
        "trace_id",
        "span_id",
        "parent_id",
        "parent_remote",
        "trace_state",
        "start_ns",
        "end_ns",
        "response_model",
        "finish_reasons",
        "attempts",
        "record",
        "provider_kind",
        "has_usage",
    )

    def __init__(self, tracing: Tracing, operation: str) -> None:
        self.tracing = tracing
        self.operation = operation
        self.trace_id: int = tracing.ids.generate_trace_id()
        self.span_id: int = tracing.ids.generate_span_id()
        self.parent_id: int | None = None  # a caller's span, from its traceparent
        self.parent_remote = False
        self.trace_state: str | None = None
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.attempts: list[UpstreamSpan] = []
        # Set by ``end``: what encoding needs from the finished request.
        self.record: RequestRecord | None = None
        self.provider_kind: str | None = None
        self.has_usage = False

    def note(self, body: Mapping[str, Any]) -> None:
        """Read the response model and finish reasons from an answer or a stream chunk."""
        if self.response_model is None and isinstance(body.get("model"), str):
            self.response_model = body["model"]
        for choice in body.get("choices") or ():
            if isinstance(choice, dict) and isinstance(reason := choice.get("finish_reason"), str):
                self._reason(reason)
        status = body.get("status")
        if body.get("object") == "response" and isinstance(status, str) and status != "in_progress":
            self._reason(status)

    def _reason(self, reason: str) -> None:
        if reason not in self.finish_reasons:  # each once, in the order first seen
            self.finish_reasons.append(reason)

    def upstream(self, provider: ProviderConfig, model: str, route: str) -> UpstreamSpan:
        if self.attempts:  # a retry or fallback: the previous reply is released
            self.attempts[-1].end()
        span_id = self.tracing.ids.generate_span_id()
        attempt = UpstreamSpan(self.trace_id, span_id, provider, model, route)
        self.attempts.append(attempt)
        return attempt

    def end(self, rec: RequestRecord, config: Config, has_usage: bool) -> None:
        """Note what encoding needs from the finished request, and queue the trace."""
        now = time.time_ns()
        if self.attempts:
            self.attempts[-1].end(now)  # a child never outlasts its parent
        self.end_ns = now
        self.record = rec  # the captured content included (``Call.finish``)
        provider = config.providers.get(rec.provider or "")
        self.provider_kind = provider.kind if provider is not None else None
        self.has_usage = has_usage
        self.tracing.batcher.add(self)

    def encode(self, encoder: SpanEncoder) -> bytes:
        """This request's spans, encoded (the exporting thread's side)."""
        rec = self.record
        assert rec is not None
        requested = rec.requested_model.split("/", 1)[1] if rec.requested_model else None
        failed = rec.status >= 500 or rec.outcome in ("error", "upstream_cut")
        # The CLIENT spans first: the order they ended in, as the SDK would send them.
        spans = [attempt.encode(encoder, self) for attempt in self.attempts]
        spans.append(
            encoder.span(
                f"{self.operation} {requested}" if requested else self.operation,
                SERVER,
                self.trace_id,
                self.span_id,
                self.start_ns,
                self.end_ns,
                _request_attributes(self, rec, requested, failed, encoder),
                parent_id=self.parent_id,
                parent_remote=self.parent_remote,
                trace_state=self.trace_state,
                status=ERROR if failed else UNSET,
                status_message=rec.error if failed else None,
                events=_content_events(rec, self.end_ns) if rec.capture else (),
            )
        )
        return b"".join(spans)


class UpstreamSpan:
    """The CLIENT span of one upstream attempt.

    It ends when it fails, when the next attempt starts, or when the request finishes:
    the relay releases the reply just before each of these, so the span covers the call
    and the reading or relaying of its answer.
    """

    __slots__ = (
        "trace_id",
        "span_id",
        "provider",
        "model",
        "route",
        "start_ns",
        "end_ns",
        "http_status",
        "error_type",
        "message",
    )

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        provider: ProviderConfig,
        model: str,
        route: str,
    ) -> None:
        # No reference back to the trace: a cycle would keep a sent trace, and the
        # request's content it holds, alive until a full garbage collection.
        self.trace_id = trace_id
        self.span_id = span_id
        self.provider = provider
        self.model = model
        self.route = route
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.http_status: int | None = None
        self.error_type: str | None = None
        self.message: str | None = None  # set: the span's status is ERROR

    def inject(self, headers: dict[str, str]) -> None:
        """Point the provider's ``traceparent`` at this span (replacing the client's)."""
        headers["traceparent"] = f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def replied(self, reply: UpstreamReply) -> None:
        self.http_status = reply.status
        if reply.status >= 400:
            self.error_type, self.message = str(reply.status), f"HTTP {reply.status}"

    def failed(self, err: BaseException, redactor: Redactor) -> None:
        self.error_type = type(err).__name__
        self.message = redactor.text(str(err)) or self.error_type
        self.end()

    def end(self, now: int | None = None) -> None:
        if not self.end_ns:
            self.end_ns = now or time.time_ns()

    def encode(self, encoder: SpanEncoder, trace: RequestTrace) -> bytes:
        provider = self.provider
        # Everything the attributes depend on: a reloaded provider gets a key of its own.
        key = (
            trace.operation,
            provider.name,
            provider.kind,
            provider.base_url,
            self.model,
            self.route,
            self.http_status,
            self.error_type,
        )
        attributes = encoder.stored(key)
        if attributes is None:
            attributes = encoder.store(key, self._attributes(trace.operation))
        return encoder.span(
            f"{trace.operation} {self.model}",
            CLIENT,
            self.trace_id,
            self.span_id,
            self.start_ns,
            self.end_ns or trace.end_ns,
            attributes,
            parent_id=trace.span_id,
            trace_state=trace.trace_state,
            status=UNSET if self.message is None else ERROR,
            status_message=self.message,
        )

    def _attributes(self, operation: str) -> dict[str, Any]:
        attributes = _upstream_attributes(operation, self.provider, self.model, self.route)
        if self.http_status is not None:
            attributes["http.response.status_code"] = self.http_status
        if self.error_type is not None:
            attributes["error.type"] = self.error_type
        return attributes


def _upstream_attributes(
    operation: str, provider: ProviderConfig, model: str, route: str
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": model,
        "gen_ai.system": provider.kind,
        "gen_ai.provider.name": provider.kind,
        "waystone.provider": provider.name,
    }
    if provider.base_url:
        url = urlsplit(strip_credentials(f"{provider.base_url.rstrip('/')}/{route}"))
        attributes.update({"url.full": url.geturl(), "http.request.method": "POST"})
        if url.hostname:
            attributes["server.address"] = url.hostname
        if url.port:
            attributes["server.port"] = url.port
    return attributes


def _request_attributes(
    trace: RequestTrace,
    rec: RequestRecord,
    requested: str | None,
    failed: bool,
    encoder: SpanEncoder,
) -> bytes:
    # Everything but the request id, the cost and the token counts repeats from request
    # to request: one key finds it all encoded.
    key = (
        trace.operation,
        requested,
        trace.response_model or rec.model,
        rec.provider,
        trace.provider_kind,
        rec.status,
        rec.outcome,
        failed,
        tuple(rec.rulesets),
        tuple(rec.rules),
        tuple(trace.finish_reasons),  # deduplicated by ``note``
        rec.user_id,
        rec.group_id,
        trace.has_usage and rec.usage_estimated,
        trace.has_usage and not rec.priced,
    )
    stable = encoder.stored(key)
    if stable is None:
        stable = encoder.store(key, _stable_attributes(trace, rec, requested, failed))
    parts = [stable, encoder.fresh("waystone.request.id", rec.id)]
    if rec.cost_usd is not None:
        parts.append(encoder.fresh("waystone.cost_usd", float(rec.cost_usd)))
    if trace.has_usage:
        parts.append(encoder.attribute("gen_ai.usage.input_tokens", rec.input_tokens))
        parts.append(encoder.attribute("gen_ai.usage.output_tokens", rec.output_tokens))
        # The GenAI conventions' cache counts, parts of the input tokens; left out when
        # none, as most requests read and write no cache.
        if rec.cached_tokens:
            parts.append(
                encoder.attribute("gen_ai.usage.cache_read.input_tokens", rec.cached_tokens)
            )
        if rec.cache_write_tokens:
            parts.append(
                encoder.attribute(
                    "gen_ai.usage.cache_creation.input_tokens", rec.cache_write_tokens
                )
            )
    return b"".join(parts)


def _stable_attributes(
    trace: RequestTrace, rec: RequestRecord, requested: str | None, failed: bool
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": trace.operation,
        "http.response.status_code": rec.status,
        "waystone.outcome": rec.outcome,
        "waystone.rulesets": tuple(rec.rulesets),
    }
    if failed:
        attributes["error.type"] = rec.outcome
    if trace.provider_kind is not None:
        attributes["gen_ai.system"] = attributes["gen_ai.provider.name"] = trace.provider_kind
        attributes["waystone.provider"] = rec.provider
    if requested:
        attributes["gen_ai.request.model"] = requested
    if response_model := trace.response_model or rec.model:
        attributes["gen_ai.response.model"] = response_model
    if rec.user_id is not None:
        attributes["waystone.user.id"] = rec.user_id
    if rec.group_id is not None:
        attributes["waystone.group.id"] = rec.group_id
    if rec.rules:
        attributes["waystone.rules"] = tuple(rec.rules)
    if trace.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = tuple(trace.finish_reasons)
    # Flags only where they differ from the usual, to keep spans small.
    if trace.has_usage and rec.usage_estimated:
        attributes["waystone.usage_estimated"] = True
    if trace.has_usage and not rec.priced:
        attributes["waystone.priced"] = False
    return attributes


def _content_events(rec: RequestRecord, at: int) -> list[tuple[str, int, dict[str, str]]]:
    """The captured prompt and output as span events (encoded in the exporting thread)."""
    events = []
    if rec.content_input is not None:
        prompt = json.dumps(rec.content_input, ensure_ascii=False, default=str)
        events.append(("gen_ai.content.prompt", at, {"gen_ai.prompt": prompt}))
    if rec.content_output is not None:
        events.append(("gen_ai.content.completion", at, {"gen_ai.completion": rec.content_output}))
    return events
