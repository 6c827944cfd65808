"""The cached OTLP encoding decodes to exactly what the SDK's own encoder produces."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from daemon import otlp
from daemon.otlp import CachedOTLPSpanExporter, SpanEncoder

RESOURCE = Resource.create({"service.name": "gw"})
SCOPE = InstrumentationScope("waystone")
TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def span(
    span_id: int,
    *,
    parent: SpanContext | None = None,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.SERVER,
    status: Status | None = None,
    events: tuple[Event, ...] = (),
    trace_state: TraceState | None = None,
) -> ReadableSpan:
    return ReadableSpan(
        "chat gpt-test",
        context=SpanContext(TRACE, span_id, False, SAMPLED, trace_state),
        parent=parent,
        resource=RESOURCE,
        attributes=attributes if attributes is not None else {},
        events=events,
        kind=kind,
        status=status or Status(StatusCode.UNSET),
        start_time=1_700_000_000_000_000_000 + span_id,
        end_time=1_700_000_000_500_000_000 + span_id,
        instrumentation_scope=SCOPE,
    )


ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.usage.input_tokens": 12,
    "waystone.cost_usd": 0.000021,
    "waystone.priced": True,
    "waystone.rulesets": ["c", "d"],
    "gen_ai.response.finish_reasons": ("stop",),
}

CASES = {
    "root server span": [span(1, attributes=ATTRS)],
    "child of a remote parent": [
        span(2, parent=SpanContext(TRACE, 9, True, SAMPLED), attributes=ATTRS)
    ],
    "client child of a local parent": [
        span(3, parent=SpanContext(TRACE, 1, False, SAMPLED), kind=SpanKind.CLIENT)
    ],
    "error with a message": [
        span(4, status=Status(StatusCode.ERROR, "HTTP 500"), attributes={"error.type": "500"})
    ],
    "content events": [
        span(
            5,
            events=(
                Event("gen_ai.content.prompt", {"gen_ai.prompt": '[{"role": "user"}]'}, 7),
                Event("gen_ai.content.completion", {"gen_ai.completion": "Hello"}, 8),
            ),
        )
    ],
    "trace state": [span(6, trace_state=TraceState([("vendor", "x")]))],
    # True == 1 in Python: the cache must not hand back the int's encoding for the bool.
    "bool and int of the same key": [
        span(7, attributes={"k": 1}),
        span(8, attributes={"k": True}),
        span(9, attributes={"k": 1.0}),
    ],
    "empty batch": [],
}


@pytest.mark.parametrize("spans", CASES.values(), ids=CASES.keys())
def test_cached_encoding_equals_the_sdk_encoding(spans: list[ReadableSpan]) -> None:
    encoder = SpanEncoder(RESOURCE, SCOPE)
    expected = encode_spans(spans) if spans else ExportTraceServiceRequest()
    first = ExportTraceServiceRequest.FromString(encoder.encode(spans))
    again = ExportTraceServiceRequest.FromString(encoder.encode(spans))  # from the cache
    if spans:
        assert first == expected
    else:
        assert [len(r.scope_spans[0].spans) for r in first.resource_spans] == [0]
    assert again == first


def test_the_cache_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "CACHE_LIMIT", 3)
    encoder = SpanEncoder(RESOURCE, SCOPE)
    spans = [span(i, attributes={"n": i, "m": "same"}) for i in range(1, 6)]
    assert ExportTraceServiceRequest.FromString(encoder.encode(spans)) == encode_spans(spans)


def test_the_exporter_finds_the_sdk_http_client_it_sends_with() -> None:
    exporter = CachedOTLPSpanExporter(
        SpanEncoder(RESOURCE, SCOPE), endpoint="http://127.0.0.1:9/v1/traces"
    )
    # An SDK upgrade that moves the client would silently fall back to the slow path.
    assert exporter.fast
    exporter.shutdown()
