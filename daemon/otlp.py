"""A faster OTLP/HTTP span exporter: the SDK's exporter with a cached protobuf encoding.

Why: the SDK's encoder builds a protobuf message per attribute of every span, which on
a one-core gateway cost about a quarter of the CPU of a whole proxied request (measured
by ``bench/tracing_overhead.py``); tracing must cost at most 10% of throughput.  Nearly
every attribute repeats from request to request (operation, provider, model, outcome,
user and group ids, token counts), so each ``(key, value)`` is encoded once, by
``opentelemetry-proto``, and its bytes reused.  A span is the protobuf encoding of its
few scalar fields followed by its attributes' cached bytes: appending a serialized
field to a serialized message is how protobuf encodes a repeated field, so the result
decodes to exactly what the SDK's encoder produces (a unit test compares the two).

Sending is left to the SDK exporter (retries, compression, TLS, headers).  Its HTTP
client is internal to it; if a future SDK moves it, ``export`` falls back to the SDK's
own encoding, slower but correct.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SdkScope

# Protobuf tags (field number << 3 | 2, length-delimited) of the fields framed here.
_RESOURCE_SPANS = 0x0A  # ExportTraceServiceRequest.resource_spans = 1
_RESOURCE = 0x0A  # ResourceSpans.resource = 1
_SCOPE_SPANS = 0x12  # ResourceSpans.scope_spans = 2
_SCOPE = 0x0A  # ScopeSpans.scope = 1
_SPANS = 0x12  # ScopeSpans.spans = 2
_TRACE_ID = b"\x0a\x10"  # Span.trace_id = 1, 16 bytes
_SPAN_ID = b"\x12\x08"  # Span.span_id = 2, 8 bytes
_TRACE_STATE = 0x1A  # Span.trace_state = 3
_PARENT_ID = b"\x22\x08"  # Span.parent_span_id = 4, 8 bytes
# Span.start_time_unix_nano = 7 and end_time_unix_nano = 8 (fixed64), flags = 16 (fixed32)
_TIMES_FLAGS = struct.Struct("<BQBQ2sI")
_ATTRIBUTES = 0x4A  # Span.attributes = 9
_EVENTS = 0x5A  # Span.events = 11
# Span.flags: the SDK's encoder says whether the parent is remote.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_KEY = 0x0A  # KeyValue.key = 1
_VALUE = 0x12  # KeyValue.value = 2
_STRING_VALUE = 0x0A  # AnyValue.string_value = 1; bool_value = 2 (varint), int_value = 3
_DOUBLE_VALUE = b"\x21"  # AnyValue.double_value = 4 (fixed64)
_DOUBLE = struct.Struct("<d")
# Distinct (key, value) pairs kept encoded; past this the cache starts over.
CACHE_LIMIT = 20_000


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))


def _scalar(value: Any) -> bytes | None:
    """An ``AnyValue`` holding a str, bool, int or float, encoded by hand (a request id or
    a cost is new on every span: protobuf's message classes cost ~10 µs per attribute);
    None for anything else."""
    cls = value.__class__
    if cls is str:
        return _field(_STRING_VALUE, value.encode())
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int and -(1 << 63) <= value < (1 << 63):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if cls is float:
        return _DOUBLE_VALUE + _DOUBLE.pack(value)
    return None


def _key_values(attributes: Any) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in (attributes or {}).items()]


class SpanEncoder:
    """Encodes spans of one resource and instrumentation scope as an OTLP export request."""

    def __init__(self, resource: Resource, scope: SdkScope) -> None:
        pb_resource = PbResource(attributes=_key_values(resource.attributes))
        pb_scope = InstrumentationScope(name=scope.name, version=scope.version or "")
        self._resource = _field(_RESOURCE, pb_resource.SerializeToString())
        self._scope = _field(_SCOPE, pb_scope.SerializeToString())
        self._attributes: dict[tuple[str, type, Any], bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        scope_spans = self._scope + b"".join(_field(_SPANS, self.span(s)) for s in spans)
        resource_spans = self._resource + _field(_SCOPE_SPANS, scope_spans)
        return _field(_RESOURCE_SPANS, resource_spans)

    def span(self, span: ReadableSpan) -> bytes:
        context = span.context
        assert context is not None
        parent = span.parent
        status = span.status
        head = [
            _TRACE_ID + context.trace_id.to_bytes(16, "big"),
            _SPAN_ID + context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            head.append(_field(_TRACE_STATE, context.trace_state.to_header().encode()))
        if parent is not None:
            head.append(_PARENT_ID + parent.span_id.to_bytes(8, "big"))
        head.append(self._cached(("name", span.name, span.kind, status.status_code), span))
        if status.description:
            head.append(self._status(status))
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
        times = (0x39, span.start_time or 0, 0x41, span.end_time or 0, b"\x85\x01", flags)
        head.append(_TIMES_FLAGS.pack(*times))
        cached = self._attributes.get
        append = head.append
        for key, value in (span.attributes or {}).items():
            if value.__class__ is list:  # encoded as its tuple
                value = tuple(value)
            encoded = cached((key, value.__class__, value))
            append(encoded if encoded is not None else self._attribute(key, value))
        for event in span.events:
            pb_event = PbSpan.Event(
                name=event.name,
                time_unix_nano=event.timestamp,
                attributes=_key_values(event.attributes),
            )
            head.append(_field(_EVENTS, pb_event.SerializeToString()))
        return b"".join(head)

    def _cached(self, key: tuple[Any, ...], span: ReadableSpan) -> bytes:
        """Name, kind and (unset or code-only) status: the same for most spans."""
        encoded = self._attributes.get(key)
        if encoded is None:
            code = span.status.status_code.value
            pb = PbSpan(
                name=span.name,
                kind=PbSpan.SpanKind.ValueType(span.kind.value + 1),  # the SDK's starts at 0
                status=PbStatus(code=PbStatus.StatusCode.ValueType(code)),
            )
            encoded = self._store(key, pb.SerializeToString())
        return encoded

    def _status(self, status: Any) -> bytes:
        # Merges into the code-only status before it, as a repeated message field does.
        pb = PbSpan(
            status=PbStatus(
                code=PbStatus.StatusCode.ValueType(status.status_code.value),
                message=status.description,
            )
        )
        return bytes(pb.SerializeToString())

    def _attribute(self, key: str, value: Any) -> bytes:
        scalar = _scalar(value)
        if scalar is None:  # an array: protobuf's own encoding
            payload = KeyValue(key=key, value=any_value(value)).SerializeToString()
        else:
            payload = _field(_KEY, key.encode()) + _field(_VALUE, scalar)
        return self._store((key, value.__class__, value), _field(_ATTRIBUTES, payload))

    def _store(self, key: tuple[Any, ...], encoded: bytes) -> bytes:
        if len(self._attributes) >= CACHE_LIMIT:
            self._attributes.clear()
        self._attributes[key] = encoded
        return encoded


class CachedOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, encoding with ``SpanEncoder`` (see the module doc)."""

    def __init__(self, encoder: SpanEncoder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder

    @property
    def fast(self) -> bool:
        """Whether the SDK's HTTP client is where this exporter expects it."""
        return callable(getattr(getattr(self, "_client", None), "export", None))

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.fast or getattr(self, "_shutdown", True):
            return super().export(spans)
        result = self._client.export(self.encoder.encode(spans))
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
