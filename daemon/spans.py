"""Recording spans: the request path's side of tracing (see ``daemon/tracing.py``).

This module imports OpenTelemetry at the top and is itself imported only when tracing
is on.  The request path builds finished ``ReadableSpan``s directly and hands them to
the provider's ``BatchSpanProcessor``, rather than going through the SDK's ``Span``
API: that API validates every attribute on every set, which, with the SDK's encoder,
cost a quarter of a proxied request's CPU (``bench/tracing_overhead.py``); the values
recorded here are all plain ``str``/``int``/``float``/``bool``/tuples.  Ids come from
the SDK's ``RandomIdGenerator``; a caller's unsampled ``traceparent`` is respected
(nothing recorded, the header goes upstream unchanged).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from daemon.call import Call
    from daemon.upstream import UpstreamReply
    from waystone_cli.core.config import ProviderConfig

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
_UNTRACED_ROUTES = frozenset({"models"})
_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Tracing:
    """The app's tracer provider and what the request path needs to record spans."""

    def __init__(self, provider: TracerProvider, processor: SpanProcessor) -> None:
        self.provider = provider
        self.processor = processor
        self.resource = provider.resource
        self.scope = InstrumentationScope("waystone")
        self.ids = RandomIdGenerator()
        self.propagator = TraceContextTextMapPropagator()
        # The CLIENT span's attributes that depend only on (provider, model, route).
        self._upstream: dict[tuple[str, str, str], dict[str, Any]] = {}

    def start(self, call: Call) -> RequestTrace | None:
        rec = call.record
        if rec.route in _UNTRACED_ROUTES:
            return None
        headers = call.request.headers
        parent: SpanContext | None = None
        if "traceparent" in headers:
            parent = get_current_span(self.propagator.extract(headers)).get_span_context()
            if not parent.is_valid:
                parent = None
            elif not parent.trace_flags.sampled:
                return None  # the caller chose not to sample: its traceparent goes upstream as is
        context = SpanContext(
            trace_id=parent.trace_id if parent else self.ids.generate_trace_id(),
            span_id=self.ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
            trace_state=parent.trace_state if parent else None,
        )
        return RequestTrace(self, context, parent, OPERATIONS.get(rec.route, rec.route))

    def upstream_attributes(
        self, operation: str, provider: ProviderConfig, model: str, route: str
    ) -> dict[str, Any]:
        key = (provider.name, model, route)
        attributes = self._upstream.get(key)
        if attributes is None:
            if len(self._upstream) >= 1000:  # models are configured: this never fills up
                self._upstream.clear()
            attributes = self._upstream[key] = _upstream_attributes(
                operation, provider, model, route
            )
        return dict(attributes)

    def record(self, span: ReadableSpan) -> None:
        self.processor.on_end(span)


class RequestTrace:
    """The SERVER span of one proxied request, recorded when the request finishes."""

    def __init__(
        self, tracing: Tracing, context: SpanContext, parent: SpanContext | None, operation: str
    ) -> None:
        self.tracing = tracing
        self.context = context
        self.parent = parent
        self.operation = operation
        self.start_ns = time.time_ns()
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.attempt: UpstreamSpan | None = None  # the upstream call not yet recorded

    def note(self, body: Mapping[str, Any]) -> None:
        """Read the response model and finish reasons from an answer or a stream chunk."""
        if self.response_model is None and isinstance(body.get("model"), str):
            self.response_model = body["model"]
        for choice in body.get("choices") or ():
            if isinstance(choice, dict) and isinstance(reason := choice.get("finish_reason"), str):
                self.finish_reasons.append(reason)
        status = body.get("status")
        if body.get("object") == "response" and isinstance(status, str) and status != "in_progress":
            self.finish_reasons.append(status)

    def upstream(self, provider: ProviderConfig, model: str, route: str) -> UpstreamSpan:
        tracing = self.tracing
        context = SpanContext(
            trace_id=self.context.trace_id,
            span_id=tracing.ids.generate_span_id(),
            is_remote=False,
            trace_flags=self.context.trace_flags,
            trace_state=self.context.trace_state,
        )
        attributes = tracing.upstream_attributes(self.operation, provider, model, route)
        if self.attempt is not None:  # a retry or fallback: the previous reply is released
            self.attempt.end()
        self.attempt = UpstreamSpan(self, context, f"{self.operation} {model}", attributes)
        return self.attempt

    def end(self, call: Call) -> None:
        rec = call.record
        requested = rec.requested_model.split("/", 1)[1] if rec.requested_model else None
        attributes = _request_attributes(call, requested, self)
        failed = rec.status >= 500 or rec.outcome in ("error", "upstream_cut")
        if failed:
            attributes["error.type"] = rec.outcome
        if self.attempt is not None:
            self.attempt.end()
        tracing = self.tracing
        tracing.record(
            ReadableSpan(
                f"{self.operation} {requested}" if requested else self.operation,
                context=self.context,
                parent=self.parent,
                resource=tracing.resource,
                attributes=attributes,
                events=_content_events(call) if rec.capture else (),
                kind=SpanKind.SERVER,
                status=Status(StatusCode.ERROR, rec.error) if failed else _UNSET,
                start_time=self.start_ns,
                end_time=time.time_ns(),
                instrumentation_scope=tracing.scope,
            )
        )


class UpstreamSpan:
    """The CLIENT span of one upstream attempt.

    It is recorded when it fails, when the next attempt starts, or when the request
    finishes: the relay releases the reply just before each of these, so the span
    covers the call and the reading or relaying of its answer.
    """

    def __init__(
        self, trace: RequestTrace, context: SpanContext, name: str, attributes: dict[str, Any]
    ) -> None:
        self.trace = trace
        self.context = context
        self.name = name
        self.attributes = attributes
        self.start_ns = time.time_ns()
        self.status = _UNSET
        self.ended = False

    def inject(self, headers: dict[str, str]) -> None:
        """Point the provider's ``traceparent`` at this span (replacing the client's)."""
        ctx = self.context
        headers["traceparent"] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"

    def replied(self, reply: UpstreamReply) -> None:
        self.attributes["http.response.status_code"] = reply.status
        if reply.status >= 400:
            self.attributes["error.type"] = str(reply.status)
            self.status = Status(StatusCode.ERROR, f"HTTP {reply.status}")

    def failed(self, err: BaseException) -> None:
        self.attributes["error.type"] = type(err).__name__
        self.status = Status(StatusCode.ERROR, str(err) or type(err).__name__)
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        tracing = self.trace.tracing
        tracing.record(
            ReadableSpan(
                self.name,
                context=self.context,
                parent=self.trace.context,
                resource=tracing.resource,
                attributes=self.attributes,
                kind=SpanKind.CLIENT,
                status=self.status,
                start_time=self.start_ns,
                end_time=time.time_ns(),
                instrumentation_scope=tracing.scope,
            )
        )


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
        url = urlsplit(f"{provider.base_url.rstrip('/')}/{route}")
        attributes.update({"url.full": url.geturl(), "http.request.method": "POST"})
        if url.hostname:
            attributes["server.address"] = url.hostname
        if url.port:
            attributes["server.port"] = url.port
    return attributes


def _request_attributes(call: Call, requested: str | None, trace: RequestTrace) -> dict[str, Any]:
    rec = call.record
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": trace.operation,
        "waystone.request.id": rec.id,
        "http.response.status_code": rec.status,
        "waystone.outcome": rec.outcome,
        "waystone.rulesets": tuple(rec.rulesets),
    }
    provider = call.snapshot.config.providers.get(rec.provider or "")
    if provider is not None:
        attributes["gen_ai.system"] = attributes["gen_ai.provider.name"] = provider.kind
        attributes["waystone.provider"] = provider.name
    if requested:
        attributes["gen_ai.request.model"] = requested
    if response_model := trace.response_model or rec.model:
        attributes["gen_ai.response.model"] = response_model
    if rec.user_id is not None:
        attributes["waystone.user.id"] = rec.user_id
    if rec.group_id is not None:
        attributes["waystone.group.id"] = rec.group_id
    if rec.cost_usd is not None:
        attributes["waystone.cost_usd"] = float(rec.cost_usd)
    if rec.rules:
        attributes["waystone.rules"] = tuple(rec.rules)
    if trace.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = tuple(dict.fromkeys(trace.finish_reasons))
    if call.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = rec.input_tokens
        attributes["gen_ai.usage.output_tokens"] = rec.output_tokens
        # Flags only where they differ from the usual, to keep spans small.
        if rec.usage_estimated:
            attributes["waystone.usage_estimated"] = True
        if not rec.priced:
            attributes["waystone.priced"] = False
    return attributes


def _content_events(call: Call) -> list[Event]:
    now = time.time_ns()
    events = []
    if call.input_content is not None:
        prompt = json.dumps(call.input_content, ensure_ascii=False, default=str)
        events.append(Event("gen_ai.content.prompt", {"gen_ai.prompt": prompt}, now))
    if call.output_text is not None:
        text = call.output_text
        events.append(Event("gen_ai.content.completion", {"gen_ai.completion": text}, now))
    return events
