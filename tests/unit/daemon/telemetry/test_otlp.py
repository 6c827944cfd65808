"""waystone's own OTLP encoding decodes to exactly what the SDK's encoder produces, and
the batcher sends every queued span."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from daemon.telemetry import otlp
from daemon.telemetry.otlp import SpanEncoder
from daemon.telemetry.span_export import SpanBatcher, send_with

RESOURCE = Resource.create({"service.name": "gw"})
TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
KINDS = {SpanKind.SERVER: otlp.SERVER, SpanKind.CLIENT: otlp.CLIENT}
CODES = {StatusCode.UNSET: otlp.UNSET, StatusCode.ERROR: otlp.ERROR}


def sdk_span(
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
        instrumentation_scope=InstrumentationScope("waystone"),
    )


def ours(encoder: SpanEncoder, span: ReadableSpan, fresh: frozenset[str] = frozenset()) -> bytes:
    """The same span through waystone's encoder (``fresh`` keys skip the cache)."""
    context, parent, status = span.context, span.parent, span.status
    assert context is not None
    attributes = b"".join(
        encoder.fresh(k, v) if k in fresh else encoder.attribute(k, v)
        for k, v in (span.attributes or {}).items()
    )
    return encoder.span(
        span.name,
        KINDS[span.kind],
        context.trace_id,
        context.span_id,
        span.start_time or 0,
        span.end_time or 0,
        attributes,
        parent_id=parent.span_id if parent is not None else None,
        parent_remote=parent is not None and parent.is_remote,
        trace_state=context.trace_state.to_header() or None,
        status=CODES[status.status_code],
        status_message=status.description,
        events=[(e.name, e.timestamp, e.attributes or {}) for e in span.events],
    )


ATTRS = {
    "gen_ai.operation.name": "chat",
    "waystone.request.id": "req_1",
    "gen_ai.usage.input_tokens": 12,
    "waystone.cost_usd": 0.000021,
    "waystone.priced": True,
    "waystone.rulesets": ["c", "d"],
    "gen_ai.response.finish_reasons": ("stop",),
    "big": -(2**40),
    "long": "x" * 300,  # lengths past one varint byte
    "unicode": "héllo ✓",
}

CASES = {
    "root server span": [sdk_span(1, attributes=ATTRS)],
    "child of a remote parent": [
        sdk_span(2, parent=SpanContext(TRACE, 9, True, SAMPLED), attributes=ATTRS)
    ],
    "client child of a local parent": [
        sdk_span(3, parent=SpanContext(TRACE, 1, False, SAMPLED), kind=SpanKind.CLIENT)
    ],
    "error with a message": [
        sdk_span(4, status=Status(StatusCode.ERROR, "HTTP 500"), attributes={"error.type": "500"})
    ],
    "content events": [
        sdk_span(
            5,
            events=(
                Event("gen_ai.content.prompt", {"gen_ai.prompt": '[{"role": "user"}]'}, 7),
                Event("gen_ai.content.completion", {"gen_ai.completion": "Hello"}, 8),
            ),
        )
    ],
    "trace state": [sdk_span(6, trace_state=TraceState([("vendor", "x")]))],
    # True == 1 in Python: the cache must not hand back the int's encoding for the bool.
    "bool and int of the same key": [
        sdk_span(7, attributes={"k": 1}),
        sdk_span(8, attributes={"k": True}),
        sdk_span(9, attributes={"k": 1.0}),
    ],
    "tuples equal in Python, of different types": [
        sdk_span(10, attributes={"t": (1,), "z": 0.0}),
        sdk_span(11, attributes={"t": (True,), "z": -0.0}),
        sdk_span(12, attributes={"t": (1.0,), "z": 0.0}),
    ],
    "empty batch": [],
}


@pytest.mark.parametrize("spans", CASES.values(), ids=CASES.keys())
def test_our_encoding_equals_the_sdk_encoding(spans: list[ReadableSpan]) -> None:
    encoder = SpanEncoder(RESOURCE, "waystone")
    expected = encode_spans(spans) if spans else ExportTraceServiceRequest()
    first = ExportTraceServiceRequest.FromString(encoder.request([ours(encoder, s) for s in spans]))
    again = ExportTraceServiceRequest.FromString(  # from the cache
        encoder.request([ours(encoder, s) for s in spans])
    )
    uncached = ExportTraceServiceRequest.FromString(
        encoder.request([ours(encoder, s, frozenset(ATTRS) | {"k"}) for s in spans])
    )
    if spans:
        assert first == expected
    else:
        assert [len(r.scope_spans[0].spans) for r in first.resource_spans] == [0]
    assert again == first
    assert uncached == first


def test_the_cache_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp, "CACHE_LIMIT", 3)
    encoder = SpanEncoder(RESOURCE, "waystone")
    spans = [sdk_span(i, attributes={"n": i, "m": "same"}) for i in range(1, 6)]
    decoded = ExportTraceServiceRequest.FromString(encoder.request(ours(encoder, s) for s in spans))
    assert decoded == encode_spans(spans)


def test_the_sdk_exporter_has_the_http_client_waystone_sends_with() -> None:
    # An SDK that moves it turns tracing off with a warning (daemon/telemetry/tracing.py).
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    assert send_with(exporter) is not None
    assert send_with(object()) is None
    exporter.shutdown()


class Receiver:
    """Stands in for the exporter's send: decodes and keeps each export request."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.posted = threading.Event()

    def __call__(self, data: bytes) -> bool:
        self.requests.append(ExportTraceServiceRequest.FromString(data))
        self.posted.set()
        return True

    def span_ids(self) -> list[int]:
        return [
            int.from_bytes(s.span_id, "big")
            for r in self.requests
            for s in r.resource_spans[0].scope_spans[0].spans
        ]


class Traced:
    """A finished trace of one span, as the batcher queues it."""

    def __init__(self, span_id: int) -> None:
        self.span_id = span_id

    def encode(self, encoder: SpanEncoder) -> bytes:
        if self.span_id < 0:
            raise ValueError("cannot encode this one")
        return encoder.span("s", otlp.SERVER, TRACE, self.span_id, 1, 2, b"")


def _spans(encoder: SpanEncoder, ids: range) -> list[Traced]:
    return [Traced(i) for i in ids]


def test_flush_sends_every_queued_span_in_batches() -> None:
    encoder, receiver = SpanEncoder(RESOURCE, "waystone"), Receiver()
    batcher = SpanBatcher(encoder, receiver, max_batch=4, delay_s=3600)
    for span in _spans(encoder, range(1, 11)):
        batcher.add(span)
    batcher.flush()
    assert receiver.span_ids() == list(range(1, 11))
    assert [len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.requests][-2:] == [4, 2]
    batcher.shutdown()


def test_a_full_batch_wakes_the_thread() -> None:
    encoder, receiver = SpanEncoder(RESOURCE, "waystone"), Receiver()
    batcher = SpanBatcher(encoder, receiver, max_batch=3, delay_s=3600)
    for span in _spans(encoder, range(1, 4)):
        batcher.add(span)
    assert receiver.posted.wait(5), "a full batch was not sent before the delay"
    batcher.shutdown()
    assert receiver.span_ids() == [1, 2, 3]


def test_a_span_that_fails_to_encode_does_not_cost_the_batch() -> None:
    encoder, receiver = SpanEncoder(RESOURCE, "waystone"), Receiver()
    batcher = SpanBatcher(encoder, receiver, delay_s=3600)
    for traced in (Traced(1), Traced(-1), Traced(2)):
        batcher.add(traced)
    batcher.shutdown()
    assert receiver.span_ids() == [1, 2]


def test_a_full_queue_drops_and_shutdown_sends_the_rest() -> None:
    encoder, receiver = SpanEncoder(RESOURCE, "waystone"), Receiver()
    batcher = SpanBatcher(encoder, receiver, max_queue=5, max_batch=100, delay_s=3600)
    for span in _spans(encoder, range(1, 8)):
        batcher.add(span)
    assert batcher.dropped == 2
    batcher.shutdown()
    assert receiver.span_ids() == [1, 2, 3, 4, 5]


def test_shutdown_gives_up_at_the_first_failed_post() -> None:
    encoder, posts = SpanEncoder(RESOURCE, "waystone"), []

    def down(data: bytes) -> bool:  # a collector that does not answer
        posts.append(data)
        return False

    batcher = SpanBatcher(encoder, down, max_batch=2, delay_s=3600)
    for span in _spans(encoder, range(1, 8)):
        batcher.add(span)
    batcher.shutdown()
    # A full batch may have woken the thread, which posted once too; but not one post
    # (one timeout) per batch of the four.
    assert len(posts) <= 2
    assert batcher.dropped + 2 * len(posts) == 7  # failed posts are the exporter's to report


def test_a_batch_past_max_bytes_goes_in_several_posts() -> None:
    encoder, receiver = SpanEncoder(RESOURCE, "waystone"), Receiver()
    one = len(Traced(1).encode(encoder))
    batcher = SpanBatcher(encoder, receiver, max_bytes=3 * one, delay_s=3600)
    for span in _spans(encoder, range(1, 8)):
        batcher.add(span)
    batcher.shutdown()
    assert receiver.span_ids() == list(range(1, 8))
    assert [len(r.resource_spans[0].scope_spans[0].spans) for r in receiver.requests] == [3, 3, 1]


def test_an_int_attribute_beyond_int64_saturates_instead_of_failing_the_span() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    for value, stored in ((2**63, 2**63 - 1), (10**30, 2**63 - 1), (-(2**70), -(2**63))):
        encoded = otlp._encode_attribute("gen_ai.usage.input_tokens", value)
        attribute = KeyValue.FromString(encoded[2:])  # past the field tag and length
        assert attribute.value.int_value == stored
    assert otlp.any_value(2**63).int_value == 2**63 - 1
