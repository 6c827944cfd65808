"""OpenTelemetry traces: one SERVER span per proxied request, one CLIENT span per upstream call.

Tracing is on only when ``[otel] endpoint`` is set and the OpenTelemetry SDK is
installed (the ``waystone[otel]`` extra).  Otherwise ``Call.trace`` is ``None`` and the
request path pays one attribute check; ``opentelemetry`` is imported only here, and only
when an endpoint is configured.

Design:

- Each app owns a ``TracerProvider`` (never the global one) with a
  ``BatchSpanProcessor`` and the OTLP/HTTP exporter; spans leave in batches from the
  SDK's worker thread.  ``tracing_ctx`` shuts the provider down on stop, in a thread,
  which flushes what is queued (the exporter blocks while it posts, and the collector
  may be served by this very event loop, as in the tests).
- The request span follows the GenAI semantic conventions: named
  ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (e.g. ``"chat gpt-test"``), with
  ``gen_ai.*`` attributes for the provider, models, token usage and finish reasons,
  plus ``waystone.*`` attributes for the user, group, cost, rulesets and outcome.
  ``gen_ai.request.model`` is the model the client asked for (without the provider
  prefix), ``gen_ai.response.model`` the one the provider says answered (else the one
  called).  ``gen_ai.system`` and ``gen_ai.provider.name`` carry the provider kind
  (``openai``, ``mock``); ``waystone.provider`` the configured provider's name.
- An incoming ``traceparent`` makes the request span its child; the upstream call is a
  CLIENT child span whose context replaces the ``traceparent`` sent to the provider.
  The CLIENT span lasts until the upstream reply is released (its body fully read or
  relayed).
- Content is recorded only for requests a ``capture`` rule applied to, as the span
  events ``gen_ai.content.prompt`` (attribute ``gen_ai.prompt``, the JSON input) and
  ``gen_ai.content.completion`` (attribute ``gen_ai.completion``, the output text).
- The config is read once at start: a changed ``[otel]`` table takes effect on restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from daemon.state import CONFIG, OBSERVER

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from daemon.call import Call
    from daemon.upstream import UpstreamReply
    from waystone_cli.core.config import OtelConfig, ProviderConfig

log = logging.getLogger("waystone.tracing")

TRACES_PATH = "/v1/traces"
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


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: ``[otel] endpoint`` may be the collector's base URL
    (``http://host:4318``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is) or the full URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class Tracing:
    """The app's tracer provider and the tracer the request path uses."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("waystone")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def build(cls, otel: OtelConfig) -> Tracing | None:
        """A tracer exporting to ``otel.endpoint``; None without an endpoint or the SDK."""
        if not otel.endpoint:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "[otel] endpoint is set but OpenTelemetry is not installed: tracing is off "
                "(install waystone[otel])"
            )
            return None
        provider = TracerProvider(
            resource=Resource.create({"service.name": otel.service_name}),
            shutdown_on_exit=False,
        )
        exporter = OTLPSpanExporter(endpoint=traces_url(otel.endpoint), headers=dict(otel.headers))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def start(self, call: Call) -> RequestTrace | None:
        rec = call.record
        if rec.route in _UNTRACED_ROUTES:
            return None
        from opentelemetry.trace import SpanKind

        headers = call.request.headers
        parent = self.propagator.extract(headers) if "traceparent" in headers else None
        operation = OPERATIONS.get(rec.route, rec.route)
        span = self.tracer.start_span(
            operation,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "http.request.method": call.request.method,
                "url.path": call.request.path,
                "waystone.request.id": rec.id,
            },
        )
        return RequestTrace(self, span, operation)

    async def flush(self) -> None:
        await asyncio.to_thread(self.provider.force_flush)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.provider.shutdown)


class RequestTrace:
    """The span of one proxied request, and what is learnt of the answer on the way."""

    def __init__(self, tracing: Tracing, span: Span, operation: str) -> None:
        self.tracing = tracing
        self.span = span
        self.operation = operation
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []

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
        from opentelemetry.trace import SpanKind, set_span_in_context

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": self.operation,
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
        span = self.tracing.tracer.start_span(
            f"{self.operation} {model}",
            context=set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        return UpstreamSpan(self.tracing, span)

    def end(self, call: Call) -> None:
        rec = call.record
        span = self.span
        requested = rec.requested_model.split("/", 1)[1] if rec.requested_model else None
        if requested:
            span.update_name(f"{self.operation} {requested}")
        span.set_attributes(_request_attributes(call, requested, self))
        if rec.capture:
            _content_events(span, call)
        if rec.status >= 500 or rec.outcome in ("error", "upstream_cut"):
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", rec.outcome)
            span.set_status(Status(StatusCode.ERROR, rec.error))
        span.end()


class UpstreamSpan:
    """The CLIENT span of one upstream attempt."""

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self.tracing = tracing
        self.span = span

    def inject(self, headers: dict[str, str]) -> None:
        """Point the provider's ``traceparent`` at this span (replacing the client's)."""
        from opentelemetry.trace import set_span_in_context

        self.tracing.propagator.inject(headers, context=set_span_in_context(self.span))

    def replied(self, reply: UpstreamReply) -> None:
        """Record the reply's status; the span ends when the reply is released."""
        self.span.set_attribute("http.response.status_code", reply.status)
        if reply.status >= 400:
            self._error(f"HTTP {reply.status}", str(reply.status))
        release: Callable[[], None] | None = reply._release

        def release_and_end() -> None:
            if release is not None:
                release()
            self.span.end()

        reply._release = release_and_end

    def failed(self, err: BaseException) -> None:
        self._error(str(err), type(err).__name__)
        self.span.end()

    def _error(self, message: str, error_type: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("error.type", error_type)
        self.span.set_status(Status(StatusCode.ERROR, message))


def _request_attributes(call: Call, requested: str | None, trace: RequestTrace) -> dict[str, Any]:
    rec = call.record
    attributes: dict[str, Any] = {
        "http.response.status_code": rec.status,
        "waystone.outcome": rec.outcome,
        "waystone.rulesets": list(rec.rulesets),
    }
    provider = call.snapshot.config.providers.get(rec.provider or "")
    if provider is not None:
        attributes["gen_ai.system"] = provider.kind
        attributes["gen_ai.provider.name"] = provider.kind
        attributes["waystone.provider"] = provider.name
    optional: dict[str, Any] = {
        "gen_ai.request.model": requested,
        "gen_ai.response.model": trace.response_model or rec.model,
        "waystone.user.id": rec.user_id,
        "waystone.group.id": rec.group_id,
        "waystone.cost_usd": float(rec.cost_usd) if rec.cost_usd is not None else None,
        "waystone.rules": list(rec.rules) or None,
        "gen_ai.response.finish_reasons": list(dict.fromkeys(trace.finish_reasons)) or None,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    if call.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = rec.input_tokens
        attributes["gen_ai.usage.output_tokens"] = rec.output_tokens
        attributes["waystone.usage_estimated"] = rec.usage_estimated
        attributes["waystone.priced"] = rec.priced
    return attributes


def _content_events(span: Span, call: Call) -> None:
    if call.input_content is not None:
        prompt = json.dumps(call.input_content, ensure_ascii=False, default=str)
        span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": prompt})
    if call.output_text is not None:
        span.add_event("gen_ai.content.completion", {"gen_ai.completion": call.output_text})


async def tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start tracing when configured; on stop, shut the provider down (flushing spans)."""
    observer = app[OBSERVER]
    tracing = Tracing.build(app[CONFIG].current.config.otel)
    observer.tracing = tracing
    try:
        yield
    finally:
        observer.tracing = None
        if tracing is not None:
            await tracing.shutdown()
