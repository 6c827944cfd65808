"""OTLP spans for waystone, encoded straight to protobuf bytes (sent by ``daemon/telemetry/span_export.py``).

Why not the SDK's span objects: with ``ReadableSpan``, the ``BatchSpanProcessor`` and
the SDK's encoder, tracing cost more of a one-core gateway's throughput than tracing
should.  Here the request path queues
finished traces (``daemon/telemetry/spans.py``) and a thread encodes and sends them:

- ``SpanEncoder`` writes a span's protobuf by hand: ids, times and flags are packed,
  the name/kind/status head and every attribute whose value repeats (operation,
  provider, model, outcome, user and group ids, token counts) are encoded once and their
  bytes reused; values new on every span (a request id, a cost) are encoded without the
  cache.  Appending a serialized field to a serialized message is how protobuf encodes
  a repeated field, so the result decodes to exactly what the SDK's encoder produces
  for the same span (``tests/unit/test_otlp.py`` compares the two).
- ``daemon/telemetry/span_export.py`` queues the finished traces and, from a thread, encodes and
  posts them in batches.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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

from waystone_cli.core.int64 import saturate

# OTLP's span kinds and status codes (the SDK's enums number them differently).
SERVER = PbSpan.SpanKind.SPAN_KIND_SERVER
CLIENT = PbSpan.SpanKind.SPAN_KIND_CLIENT
UNSET = PbStatus.StatusCode.STATUS_CODE_UNSET
ERROR = PbStatus.StatusCode.STATUS_CODE_ERROR

# Protobuf tags (field number << 3 | 2, length-delimited) of the fields framed here.
_RESOURCE_SPANS = 0x0A  # ExportTraceServiceRequest.resource_spans = 1
_RESOURCE = 0x0A  # ResourceSpans.resource = 1
_SCOPE_SPANS = 0x12  # ResourceSpans.scope_spans = 2
_SCOPE = 0x0A  # ScopeSpans.scope = 1
_SPANS = 0x12  # ScopeSpans.spans = 2
_SPANS_TAG = bytes((_SPANS,))
# trace_id = 1 (16 bytes, in two halves), span_id = 2 (8 bytes), parent_span_id = 4 (8 bytes)
_IDS = struct.Struct(">2sQQ2sQ")
_IDS_PARENT = struct.Struct(">2sQQ2sQ2sQ")
_LOW64 = 0xFFFFFFFFFFFFFFFF
_TRACE_ID = b"\x0a\x10"
_SPAN_ID = b"\x12\x08"
_TRACE_STATE = 0x1A  # Span.trace_state = 3
_PARENT_TAG = b"\x22\x08"
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
_STRING = bytes((_STRING_VALUE,))
_ATTRIBUTE = bytes((_ATTRIBUTES,))
_DOUBLE_VALUE = b"\x21"  # AnyValue.double_value = 4 (fixed64)
_DOUBLE = struct.Struct("<d")
# Distinct (key, value) pairs kept encoded; past this the cache starts over.
CACHE_LIMIT = 20_000


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
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
        return AnyValue(int_value=saturate(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))


def _scalar(value: Any) -> bytes | None:
    """An ``AnyValue`` holding a bool or an int64, encoded by hand; None for anything else
    (protobuf's message classes cost far more per attribute).  Strings and floats are
    ``SpanEncoder.fresh``'s."""
    cls = value.__class__
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:  # a count beyond int64 (junk usage) saturates: the span still goes
        return b"\x18" + _varint(saturate(value) & 0xFFFFFFFFFFFFFFFF)  # two's complement
    return None


def _encode_attribute(key: str, value: Any) -> bytes:
    """A span's ``attributes`` entry, any value."""
    scalar = _scalar(value)
    if scalar is None:  # an array: protobuf's own encoding
        payload = KeyValue(key=key, value=any_value(value)).SerializeToString()
    else:
        payload = _field(_KEY, key.encode()) + _field(_VALUE, scalar)
    return _field(_ATTRIBUTES, payload)


def _rare_fields(
    trace_state: str | None,
    status: int,
    status_message: str | None,
    events: Sequence[tuple[str, int, Mapping[str, Any]]],
) -> bytes:
    """A span's trace state, status message and events, which few spans have."""
    parts = []
    if trace_state:
        parts.append(_field(_TRACE_STATE, trace_state.encode()))
    if status_message:
        # Merges into the code-only status of the head, as a repeated message field does.
        pb = PbSpan(status=PbStatus(code=status, message=status_message))  # type: ignore[arg-type]
        parts.append(pb.SerializeToString())
    for name, at, attributes in events:
        pb_event = PbSpan.Event(name=name, time_unix_nano=at, attributes=_key_values(attributes))
        parts.append(_field(_EVENTS, pb_event.SerializeToString()))
    return b"".join(parts)


def _key_values(attributes: Mapping[str, Any] | None) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in (attributes or {}).items()]


class SpanEncoder:
    """Encodes the spans of one resource and instrumentation scope (see the module doc)."""

    def __init__(self, resource: Resource, scope: str, scope_version: str = "") -> None:
        pb_resource = PbResource(attributes=_key_values(resource.attributes))
        pb_scope = InstrumentationScope(name=scope, version=scope_version)
        self._resource = _field(_RESOURCE, pb_resource.SerializeToString())
        self._scope = _field(_SCOPE, pb_scope.SerializeToString())
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._sets: dict[tuple[Any, ...], bytes] = {}
        self._keys: dict[str, bytes] = {}  # attribute names: a fixed set
        self._double_keys: dict[str, bytes] = {}

    def request(self, spans: Iterable[bytes]) -> bytes:
        """An ``ExportTraceServiceRequest`` carrying spans encoded by ``span``."""
        scope_spans = self._scope + b"".join(spans)
        resource_spans = self._resource + _field(_SCOPE_SPANS, scope_spans)
        return _field(_RESOURCE_SPANS, resource_spans)

    def attribute(self, key: str, value: Any) -> bytes:
        """One attribute, from the cache: for values that repeat across spans."""
        cls = value.__class__
        if cls is float:  # -0.0 == 0.0, and floats seldom repeat: not cached
            return self.fresh(key, value)
        if cls is list or cls is tuple:  # (1,) == (True,): the items' classes join the key
            value = tuple(value)
            cache_key: tuple[Any, ...] = (key, tuple, value, tuple(map(type, value)))
        else:
            cache_key = (key, cls, value)  # True == 1: the class keeps them apart
        encoded = self._cache.get(cache_key)
        if encoded is None:
            encoded = self._store(cache_key, self.fresh(key, value))
        return encoded

    def stored(self, key: tuple[Any, ...]) -> bytes | None:
        """Attributes kept together by ``store`` under ``key``, or None."""
        return self._sets.get(key)

    def store(self, key: tuple[Any, ...], attributes: Mapping[str, Any]) -> bytes:
        """Attributes that repeat together (a request's model, outcome, user and group...),
        encoded and kept under ``key``: one lookup on the next span instead of one each."""
        if len(self._sets) >= CACHE_LIMIT:
            self._sets.clear()
        encoded = self._sets[key] = b"".join([self.attribute(k, v) for k, v in attributes.items()])
        return encoded

    def fresh(self, key: str, value: Any) -> bytes:
        """One attribute, encoded now: for values new on every span (ids, costs)."""
        cls = value.__class__
        if cls is str:  # a request id: the key's bytes are kept, the value's framed here
            data: bytes = value.encode()
            value_field = _STRING + _varint(len(data)) + data
            payload = self._key(key) + _varint(len(value_field)) + value_field
            return _ATTRIBUTE + _varint(len(payload)) + payload
        if cls is float:  # a cost: all but the 8 bytes of the double are the key's
            prefix = self._double_keys.get(key)
            if prefix is None:
                head = self._key(key) + b"\x09" + _DOUBLE_VALUE  # the value field: 9 bytes
                prefix = self._double_keys[key] = _ATTRIBUTE + _varint(len(head) + 8) + head
            return prefix + _DOUBLE.pack(value)
        return _encode_attribute(key, value)

    def _key(self, key: str) -> bytes:
        """A KeyValue's key field and its value field's tag."""
        encoded = self._keys.get(key)
        if encoded is None:
            encoded = self._keys[key] = _field(_KEY, key.encode()) + bytes((_VALUE,))
        return encoded

    def span(
        self,
        name: str,
        kind: int,
        trace_id: int,
        span_id: int,
        start_ns: int,
        end_ns: int,
        attributes: bytes,
        *,
        parent_id: int | None = None,
        parent_remote: bool = False,
        trace_state: str | None = None,
        status: int = UNSET,
        status_message: str | None = None,
        events: Sequence[tuple[str, int, Mapping[str, Any]]] = (),
    ) -> bytes:
        """One span's encoding, framed as an entry of ``ScopeSpans.spans``; ``attributes``
        is the concatenation of ``attribute`` and ``fresh`` results, ``events`` are
        (name, time in ns, attributes)."""
        if parent_id is None:
            ids = _IDS.pack(_TRACE_ID, trace_id >> 64, trace_id & _LOW64, _SPAN_ID, span_id)
        else:
            ids = _IDS_PARENT.pack(
                _TRACE_ID,
                trace_id >> 64,
                trace_id & _LOW64,
                _SPAN_ID,
                span_id,
                _PARENT_TAG,
                parent_id,
            )
        head = self._cache.get((name, kind, status)) or self._head(name, kind, status)
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent_remote else 0)
        times = _TIMES_FLAGS.pack(0x39, start_ns, 0x41, end_ns, b"\x85\x01", flags)
        rare = (
            _rare_fields(trace_state, status, status_message, events)
            if (trace_state or status_message or events)
            else b""
        )
        size = len(ids) + len(head) + len(rare) + len(times) + len(attributes)
        return b"".join((_SPANS_TAG, _varint(size), ids, head, rare, times, attributes))

    def _head(self, name: str, kind: int, status: int) -> bytes:
        """Name, kind and code-only status: the same for most spans."""
        pb = PbSpan(name=name, kind=kind, status=PbStatus(code=status))  # type: ignore[arg-type]
        return self._store((name, kind, status), pb.SerializeToString())

    def _store(self, key: tuple[Any, ...], encoded: bytes) -> bytes:
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = encoded
        return encoded
