"""What the request path keeps for tracing is freed as soon as it has been sent: no
reference cycle holds a finished request (and the content a capture rule kept) until a
full garbage collection, which the daemon makes rare (``daemon/server.py: tune_gc``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from daemon.telemetry.otlp import SpanEncoder
from daemon.telemetry.span_export import SpanBatcher
from daemon.telemetry.spans import Tracing
from waystone_cli.core.config import ProviderConfig
from waystone_cli.core.records import RequestRecord


class Prompt(list[Any]):
    """A request's messages, as a weakly referenceable list."""


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_sent_trace_and_its_captured_content_are_freed_without_a_collection(
    no_gc: None,
) -> None:
    posts: list[bytes] = []

    def send(data: bytes) -> bool:
        posts.append(data)
        return True

    encoder = SpanEncoder(Resource.create({"service.name": "gw"}), "waystone")
    batcher = SpanBatcher(encoder, send, delay_s=3600)
    tracing = Tracing(batcher, SimpleNamespace(shutdown=lambda: None))  # type: ignore[arg-type]
    provider = ProviderConfig(name="up", base_url="http://127.0.0.1:9/v1")
    prompt = Prompt([{"role": "user", "content": "tell me a secret"}])
    freed = weakref.ref(prompt)
    record = RequestRecord(
        id="req_1",
        ts=datetime(2026, 3, 1),
        route="chat/completions",
        status=200,
        provider="up",
        requested_model="up/gpt-test",
        model="gpt-test",
        capture=True,
        content_input=prompt,
        content_output="a secret",
    )
    call = SimpleNamespace(
        record=record,
        request=SimpleNamespace(headers={}),
        snapshot=SimpleNamespace(config=SimpleNamespace(providers={"up": provider})),
        usage=None,
    )
    trace = tracing.start(record, call.request.headers)
    assert trace is not None
    for _ in range(2):  # a retry: two upstream attempts
        trace.upstream(provider, "gpt-test", "chat/completions").replied(
            SimpleNamespace(status=200)  # type: ignore[arg-type]
        )
    trace.end(record, call.snapshot.config, call.usage is not None)  # type: ignore[arg-type]
    del trace, call, record, prompt
    assert freed() is not None  # queued: the trace holds the record

    batcher.flush()
    [post] = posts
    spans = ExportTraceServiceRequest.FromString(post).resource_spans[0].scope_spans[0].spans
    assert [s.kind for s in spans] == [3, 3, 2]  # two CLIENT spans, then their SERVER span
    assert [e.name for e in spans[2].events] == [
        "gen_ai.content.prompt",
        "gen_ai.content.completion",
    ]
    assert freed() is None
    batcher.shutdown()


def _server_span_attributes(record: RequestRecord) -> dict[str, Any]:
    """The attributes of the SERVER span the request path sends for ``record``."""
    posts: list[bytes] = []
    encoder = SpanEncoder(Resource.create({"service.name": "gw"}), "waystone")
    batcher = SpanBatcher(encoder, lambda data: posts.append(data) or True, delay_s=3600)
    tracing = Tracing(batcher, SimpleNamespace(shutdown=lambda: None))  # type: ignore[arg-type]
    provider = ProviderConfig(name="up", base_url="http://127.0.0.1:9/v1")
    config = SimpleNamespace(providers={"up": provider})
    trace = tracing.start(record, {})
    assert trace is not None
    trace.end(record, config, True)  # type: ignore[arg-type]
    batcher.flush()
    batcher.shutdown()
    [post] = posts
    [span] = ExportTraceServiceRequest.FromString(post).resource_spans[0].scope_spans[0].spans
    return {a.key: a.value.int_value for a in span.attributes if "usage" in a.key}


def test_the_span_carries_cache_reads_and_writes_by_their_genai_names() -> None:
    record = RequestRecord(
        id="req_1",
        ts=datetime(2026, 3, 1),
        route="messages",
        status=200,
        provider="up",
        model="claude-sonnet-4",
        input_tokens=10_000,
        output_tokens=500,
        cached_tokens=3_000,
        cache_write_tokens=2_000,
    )
    assert _server_span_attributes(record) == {
        "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 3_000,
        "gen_ai.usage.cache_creation.input_tokens": 2_000,
    }
    record.cached_tokens = record.cache_write_tokens = 0
    assert _server_span_attributes(record) == {
        "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 500,
    }
