"""OpenTelemetry traces: one SERVER span per proxied request, one CLIENT span per upstream call.

Tracing is on only when ``[otel] endpoint`` is set and the OpenTelemetry SDK is
installed (the ``waystone[otel]`` extra).  Otherwise ``Call.trace`` is ``None`` and the
request path pays one attribute check.  This module sets tracing up and tears it down;
the recording lives in ``daemon/telemetry/spans.py``, the encoding in ``daemon/telemetry/otlp.py`` and the
sending in ``daemon/telemetry/span_export.py``, all imported (with OpenTelemetry) only when an
endpoint is configured.

Design:

- Each app has its own tracing (the global tracer provider is left alone): a finished
  request's trace is queued, and a thread encodes the queue to OTLP protobuf and sends
  it in batches through the SDK's OTLP/HTTP exporter (``daemon/telemetry/otlp.py`` says why not
  the SDK's span objects).  A full queue (4,096 requests) drops spans with a warning.
  ``tracing_ctx`` shuts it down on stop, in a thread, which sends what is queued (the
  exporter blocks while it posts, and the collector may be served by this very event
  loop, as in the tests).
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
  The CLIENT span lasts until its answer has been read or relayed (or the call failed,
  or the next attempt of a retry or fallback started).  A caller's unsampled
  ``traceparent`` is respected: nothing is recorded and the header goes upstream as is.
- Content is recorded only for requests a ``capture`` rule applied to, as the span
  events ``gen_ai.content.prompt`` (attribute ``gen_ai.prompt``, the JSON input) and
  ``gen_ai.content.completion`` (attribute ``gen_ai.completion``, the output text).
- The config is read once at start: a changed ``[otel]`` table takes effect on restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from daemon.state import CONFIG, OBSERVER

if TYPE_CHECKING:
    from daemon.telemetry.spans import RequestTrace as RequestTrace
    from daemon.telemetry.spans import Tracing as Tracing
    from daemon.telemetry.spans import UpstreamSpan as UpstreamSpan
    from waystone_cli.core.config import OtelConfig

log = logging.getLogger("waystone.tracing")

TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: ``[otel] endpoint`` may be the collector's base URL
    (``http://host:4318``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is) or the full URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def build_tracing(otel: OtelConfig) -> Tracing | None:
    """Tracing that exports to ``otel.endpoint``; None without an endpoint or the SDK."""
    if not otel.endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource

        from daemon.telemetry.otlp import SpanEncoder
        from daemon.telemetry.span_export import SpanBatcher, send_with
        from daemon.telemetry.spans import Tracing
    except ImportError:
        log.warning(
            "[otel] endpoint is set but OpenTelemetry is not installed: tracing is off "
            "(install waystone[otel])"
        )
        return None
    exporter = OTLPSpanExporter(endpoint=traces_url(otel.endpoint), headers=dict(otel.headers))
    send = send_with(exporter)
    if send is None:
        log.warning(
            "[otel] endpoint is set but this OpenTelemetry exporter is too old to send "
            "waystone's spans: tracing is off (install waystone[otel] for version 1.45 or later)"
        )
        return None
    resource = Resource.create({"service.name": otel.service_name})
    encoder = SpanEncoder(resource, "waystone")
    # Batches of 1,024 requests (2,048 spans) rather than the SDK's 512 spans: a quarter
    # of the posts under load; the queue four times deeper, so a burst still fits while
    # one batch is on its way.
    batcher = SpanBatcher(encoder, send, max_queue=4096, max_batch=1024)
    return Tracing(batcher, exporter)


async def flush(tracing: Tracing) -> None:
    """Export every span recorded so far (in a thread: the exporter blocks while it posts)."""
    await asyncio.to_thread(tracing.batcher.flush)


async def tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start tracing when configured; on stop, shut it down (sending the queued spans)."""
    observer = app[OBSERVER]
    tracing = build_tracing(app[CONFIG].current.config.otel)
    observer.tracing = tracing
    try:
        yield
    finally:
        observer.tracing = None
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)
