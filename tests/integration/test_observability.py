"""Traces, metrics, readiness and log lines of real requests through the real daemon app.

Spans are exported by the OpenTelemetry SDK over OTLP/HTTP to a receiver on loopback
that decodes ``ExportTraceServiceRequest`` with ``opentelemetry-proto``.  Tokens and
costs are the fake provider's fixed chat usage (prompt 12 with 2 cached, completion 5)
at up/gpt-test's prices (input 1.0, cached input 0.5, output 2.0 USD per million):
(10 * 1.0 + 2 * 0.5 + 5 * 2.0) / 1e6 = 0.000021 USD per chat.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client.parser import text_string_to_metric_families

from daemon.state import LEDGER, OBSERVER
from daemon.telemetry import observe
from daemon.telemetry.tracing import flush
from tests.integration.conftest import Gateway

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"
INCOMING_TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
CHAT_COST = 0.000021
MESSAGES = [{"role": "user", "content": "tell me a secret"}]


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    service_name: str
    start: int = 0
    end: int = 0


@dataclass
class Receiver:
    """An OTLP/HTTP collector on loopback that keeps every span it receives."""

    spans: list[Span] = field(default_factory=list)
    server: TestServer | None = None
    exports: list[bytes] = field(default_factory=list)  # as they arrived, decompressed

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        return app

    async def traces(self, request: web.Request) -> web.Response:
        data = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        self.exports.append(data)
        export = ExportTraceServiceRequest.FromString(data)
        for resource_spans in export.resource_spans:
            service = _attributes(resource_spans.resource.attributes)["service.name"]
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(_span(s, service) for s in scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(""))


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _span(s: Any, service: str) -> Span:
    return Span(
        name=s.name,
        kind=s.kind,
        trace_id=s.trace_id.hex(),
        span_id=s.span_id.hex(),
        parent_span_id=s.parent_span_id.hex(),
        attributes=_attributes(s.attributes),
        events=[(e.name, _attributes(e.attributes)) for e in s.events],
        status_code=s.status.code,
        service_name=service,
        start=s.start_time_unix_nano,
        end=s.end_time_unix_nano,
    )


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    rec = Receiver()
    rec.server = await aiohttp_server(rec.app())
    return rec


@pytest.fixture
def traced(start_gateway: Callable[..., Any], receiver: Receiver) -> Callable[[str], Any]:
    async def start(extra: str = "") -> Gateway:
        otel = f'[otel]\nendpoint = "{receiver.endpoint}"\nservice_name = "gw-test"\n'
        gateway: Gateway = await start_gateway(otel + extra)
        return gateway

    return start


async def _flush(gateway: Gateway) -> None:
    tracing = gateway.app[OBSERVER].tracing
    assert tracing is not None
    await flush(tracing)


def _by_kind(spans: list[Span]) -> dict[int, Span]:
    by_kind = {s.kind: s for s in spans}
    assert len(by_kind) == len(spans), spans
    return by_kind


async def test_a_chat_is_a_server_span_with_genai_attributes_and_an_upstream_client_child(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced("")
    client = gateway.client()
    await client.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        extra_headers={
            "traceparent": INCOMING_TRACEPARENT,
            "X-Waystone-User": "alice",
            "X-Waystone-Group": "acme",
        },
    )
    await _flush(gateway)

    spans = _by_kind(receiver.spans)
    server, upstream = spans[SERVER], spans[CLIENT]
    request_id = server.attributes.pop("waystone.request.id")
    assert request_id.startswith("req_")
    assert (server.name, server.trace_id, server.parent_span_id) == (
        "chat gpt-test",
        TRACE_ID,
        CLIENT_SPAN_ID,
    )
    assert server.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.response.model": "gpt-test",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "http.response.status_code": 200,
        "waystone.provider": "up",
        "waystone.user.id": "alice",
        "waystone.group.id": "acme",
        "waystone.cost_usd": CHAT_COST,
        "waystone.rulesets": [],
        "waystone.outcome": "ok",
    }
    assert server.events == [] and upstream.events == []
    assert server.service_name == "gw-test"

    url = upstream.attributes.pop("url.full")
    port = upstream.attributes.pop("server.port")
    assert url == f"http://127.0.0.1:{port}/v1/chat/completions"
    assert (upstream.name, upstream.trace_id, upstream.parent_span_id) == (
        "chat gpt-test",
        TRACE_ID,
        server.span_id,
    )
    assert upstream.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-test",
        "gen_ai.system": "openai",
        "gen_ai.provider.name": "openai",
        "waystone.provider": "up",
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
    }
    # The provider sees the upstream span as the parent, not the client's span.
    seen = gateway.provider.seen[-1].headers
    assert seen["traceparent"] == f"00-{TRACE_ID}-{upstream.span_id}-01"


async def test_content_is_a_span_event_only_when_a_capture_rule_applies(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced(
        '[rules.cap]\naction = "capture"\n[rulesets.c]\nwhen = "user.id = carol"\nrules = ["cap"]\n'
    )
    client = gateway.client()
    for user in ("carol", "dave"):
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Waystone-User": user},
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == (
            "Hello from fake"
        )
    await _flush(gateway)

    servers = {s.attributes["waystone.user.id"]: s for s in receiver.spans if s.kind == SERVER}
    captured, plain = servers["carol"], servers["dave"]
    assert captured.events == [
        ("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(MESSAGES)}),
        ("gen_ai.content.completion", {"gen_ai.completion": "Hello from fake"}),
    ]
    assert captured.attributes["waystone.rulesets"] == ["c"]
    assert captured.attributes["waystone.rules"] == ["c/cap"]
    assert plain.events == []
    assert "waystone.rules" not in plain.attributes
    for span in (captured, plain):
        assert span.parent_span_id == ""  # no traceparent came in: a root span
        assert (
            span.attributes["gen_ai.usage.input_tokens"],
            span.attributes["gen_ai.usage.output_tokens"],
            span.attributes["gen_ai.response.finish_reasons"],
        ) == (12, 5, ["stop"])
    clients = [s for s in receiver.spans if s.kind == CLIENT]
    assert sorted(s.parent_span_id for s in clients) == sorted(s.span_id for s in servers.values())
    assert [s.events for s in clients] == [[], []]
    # Without an incoming traceparent the upstream still gets one, of this trace.
    sent = sorted(s.headers["traceparent"] for s in gateway.provider.seen)
    assert sent == sorted(f"00-{s.trace_id}-{s.span_id}-01" for s in clients)


async def test_refused_and_failed_requests_are_spans_with_their_outcome(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced(
        '[rules.deny]\naction = "block"\nmessage = "not you"\n'
        '[rulesets.banned]\nwhen = "user.id = mallory"\nrules = ["deny"]\n'
    )
    async with aiohttp.ClientSession() as http:
        for user, model, status in (("mallory", "gpt-test", 403), ("erin", "error-model", 500)):
            async with http.post(
                gateway.url + "v1/chat/completions",
                json={"model": model, "messages": MESSAGES},
                headers={"X-Waystone-User": user},
            ) as resp:
                assert resp.status == status
    await _flush(gateway)

    servers = {s.attributes["waystone.user.id"]: s for s in receiver.spans if s.kind == SERVER}
    blocked, failed = servers["mallory"], servers["erin"]
    assert (
        blocked.name,
        blocked.attributes["http.response.status_code"],
        blocked.attributes["waystone.outcome"],
        blocked.attributes["waystone.rules"],
        blocked.status_code,
    ) == ("chat gpt-test", 403, "blocked", ["banned/deny"], 0)
    assert "gen_ai.usage.input_tokens" not in blocked.attributes
    assert (
        failed.name,
        failed.attributes["http.response.status_code"],
        failed.attributes["waystone.outcome"],
        failed.attributes["error.type"],
        failed.status_code,
    ) == ("chat error-model", 500, "upstream_error", "upstream_error", 2)
    [upstream] = [s for s in receiver.spans if s.kind == CLIENT]
    assert (upstream.parent_span_id, upstream.attributes["http.response.status_code"]) == (
        failed.span_id,
        500,
    )
    assert (upstream.attributes["error.type"], upstream.status_code) == ("500", 2)


async def test_spans_still_queued_are_exported_when_the_app_stops(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced("")
    await gateway.client().embeddings.create(model="embed-test", input="hi")
    await gateway.server.close()
    assert sorted((s.name, s.kind) for s in receiver.spans) == [
        ("embeddings embed-test", SERVER),
        ("embeddings embed-test", CLIENT),
    ]


async def test_without_an_endpoint_nothing_is_traced(gateway: Gateway) -> None:
    await gateway.client().embeddings.create(model="embed-test", input="hi")
    assert gateway.app[OBSERVER].tracing is None
    assert "traceparent" not in gateway.provider.seen[-1].headers


# --- metrics --------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _of(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[Any, float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


async def _scrape(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(gateway.url + "metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return _samples(await resp.text())


METRICS_CONFIG = """
[server]
metrics_user_labels = true
metrics_user_label_limit = 2

[rules.rpm-2]
rate = { rpm = 2 }
action = "block"
[rules.cap]
action = "capture"
[rulesets.everyone]
when = "always"
rules = ["rpm-2", "cap"]
"""


async def test_metrics_count_the_requests_sent_with_exact_tokens_costs_and_blocks(
    start_gateway: Callable[..., Any],
) -> None:
    gateway: Gateway = await start_gateway(METRICS_CONFIG)
    async with aiohttp.ClientSession() as http:

        async def post(route: str, body: dict[str, Any], user: str) -> int:
            async with http.post(
                gateway.url + "v1/" + route, json=body, headers={"X-Waystone-User": user}
            ) as resp:
                await resp.read()
                return resp.status

        chat = {"model": "gpt-test", "messages": MESSAGES}
        statuses = [
            await post("chat/completions", chat, "alice"),
            await post("chat/completions", {**chat, "stream": True}, "alice"),
            await post("chat/completions", chat, "alice"),  # the third in a minute: refused
            await post("embeddings", {"model": "embed-test", "input": "hi"}, "bob"),
            await post("chat/completions", {**chat, "model": "up/shared-model"}, "carol"),
            await post("chat/completions", {**chat, "model": "error-model"}, "dave"),
        ]
    assert statuses == [200, 200, 429, 200, 200, 500]
    samples = await _scrape(gateway)

    def route(r: str, status: str, outcome: str) -> tuple[tuple[str, str], ...]:
        return (("outcome", outcome), ("route", r), ("status", status))

    assert _of(samples, "waystone_requests_total") == {
        route("chat/completions", "200", "ok"): 3,
        route("chat/completions", "429", "rate_limited"): 1,
        route("chat/completions", "500", "upstream_error"): 1,
        route("embeddings", "200", "ok"): 1,
    }

    def pm(provider: str, model: str, *more: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((("model", model), ("provider", provider), *more)))

    assert _of(samples, "waystone_tokens_total") == {
        pm("up", "gpt-test", ("type", "input")): 24,
        pm("up", "gpt-test", ("type", "output")): 10,
        pm("up", "embed-test", ("type", "input")): 8,
        pm("up", "shared-model", ("type", "input")): 12,
        pm("up", "shared-model", ("type", "output")): 5,
    }
    cost = _of(samples, "waystone_cost_usd_total")
    assert cost.keys() == {pm("up", "gpt-test"), pm("up", "embed-test")}
    assert cost[pm("up", "gpt-test")] == pytest.approx(2 * CHAT_COST, rel=1e-12)
    assert cost[pm("up", "embed-test")] == pytest.approx(8 * 0.1 / 1e6, rel=1e-12)
    assert _of(samples, "waystone_unpriced_requests_total") == {pm("up", "shared-model"): 1}
    # The capture rule fired beside the rate limit but did not refuse the request.
    assert _of(samples, "waystone_blocks_total") == {
        (("rule", "rpm-2"), ("ruleset", "everyone")): 1
    }
    assert _of(samples, "waystone_provider_errors_total") == {(("provider", "up"),): 1}

    assert _of(samples, "waystone_request_duration_seconds_count") == {
        (("route", "chat/completions"),): 5,
        (("route", "embeddings"),): 1,
    }
    assert _of(samples, "waystone_gateway_overhead_seconds_count") == {
        (("route", "chat/completions"),): 5,
        (("route", "embeddings"),): 1,
    }
    assert _of(samples, "waystone_time_to_first_token_seconds_count") == {
        (("route", "chat/completions"),): 1
    }

    # Per-user series, capped at two users: carol and dave share "_other".
    assert _of(samples, "waystone_user_requests_total") == {
        (("user", "alice"),): 3,
        (("user", "bob"),): 1,
        (("user", "_other"),): 2,
    }
    assert _of(samples, "waystone_user_tokens_total") == {
        (("type", "input"), ("user", "alice")): 24,
        (("type", "output"), ("user", "alice")): 10,
        (("type", "input"), ("user", "bob")): 8,
        (("type", "input"), ("user", "_other")): 12,
        (("type", "output"), ("user", "_other")): 5,
    }
    assert set(_of(samples, "waystone_ledger_queue_depth")) == {()}
    await gateway.app[LEDGER].flush()
    after = await _scrape(gateway)
    assert _of(after, "waystone_ledger_queue_depth") == {(): 0}
    assert set(_of(after, "waystone_ledger_last_flush_seconds")) == {()}


async def test_per_user_series_stay_empty_unless_enabled(gateway: Gateway) -> None:
    await gateway.client().embeddings.create(
        model="embed-test", input="hi", extra_headers={"X-Waystone-User": "alice"}
    )
    samples = await _scrape(gateway)
    assert _of(samples, "waystone_user_requests_total") == {}
    assert _of(samples, "waystone_requests_total") == {
        (("outcome", "ok"), ("route", "embeddings"), ("status", "200")): 1
    }


SCRAPE_KEY = "ws-scrape-secret"
SCRAPE_KEYS = (
    f'[keys.prometheus]\nhash = "sha256:{hashlib.sha256(SCRAPE_KEY.encode()).hexdigest()}"\n'
)


async def _get_metrics(gateway: Gateway, key: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(gateway.url + "metrics", headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_metrics_need_the_gateway_key_once_keys_are_configured(start_gateway: Any) -> None:
    gateway = await start_gateway(SCRAPE_KEYS)
    refused = {
        "error": {
            "message": "invalid or missing gateway key (Authorization: Bearer <key>)",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    for key in (None, "ws-wrong"):
        status, text = await _get_metrics(gateway, key)
        assert (status, json.loads(text)) == (401, refused)
    status, text = await _get_metrics(gateway, SCRAPE_KEY)
    assert status == 200
    assert _of(_samples(text), "waystone_requests_total") == {
        (("outcome", "unauthorized"), ("route", "metrics"), ("status", "401")): 2
    }
    rows = await gateway.rows()
    assert [(r["route"], r["status"], r["outcome"]) for r in rows] == [
        ("metrics", 401, "unauthorized"),
        ("metrics", 401, "unauthorized"),
    ]


async def test_metrics_public_opens_metrics_despite_keys(start_gateway: Any) -> None:
    gateway = await start_gateway(SCRAPE_KEYS + "[server]\nmetrics_public = true\n")
    status, text = await _get_metrics(gateway, None)
    assert status == 200 and "waystone_requests_total" in text
    assert await gateway.rows() == []


# --- readiness and logs -----------------------------------------------------------------


async def test_readyz_reports_each_providers_last_error(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "error-model", "messages": MESSAGES},
        ) as resp:
            assert resp.status == 500
        async with http.get(gateway.url + "readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
    providers = body["checks"]["providers"]
    assert providers["local"] == {"last_error": None, "last_error_at": None}
    assert providers["up"]["last_error"] == "answered HTTP 500"
    assert providers["up"]["last_error_at"].endswith("+00:00")


async def test_batched_metrics_and_lines_wait_for_neither_a_scrape_nor_a_stop(
    start_gateway: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, daemon_logger: Any
) -> None:
    # The daemon's handler alone (outside pytest's capture) makes the observer batch;
    # a batch that would wait 10 minutes shows what the scrape and the stop flush.
    logger, _, out = daemon_logger
    monkeypatch.setattr(observe, "log", logger)
    monkeypatch.setattr(observe, "BATCH_S", 600.0)
    gateway: Gateway = await start_gateway()
    await gateway.client().chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers={"X-Waystone-User": "alice"}
    )
    assert out.getvalue() == ""  # waiting in the batch
    samples = await _scrape(gateway)
    assert _of(samples, "waystone_requests_total") == {
        (("outcome", "ok"), ("route", "chat/completions"), ("status", "200")): 1
    }
    [first] = out.getvalue().splitlines()  # written by the scrape's flush
    await gateway.client().chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_headers={"X-Waystone-User": "bob"}
    )
    assert out.getvalue().splitlines() == [first]
    await gateway.server.close()  # the app's cleanup
    lines = out.getvalue().splitlines()
    assert [line.split(" user=")[1].split()[0] for line in lines] == ["alice", "bob"]
    assert all(" INFO waystone.request request_id=req_" in line for line in lines)


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_one_log_line_per_request_without_keys_or_content(
    start_gateway: Callable[..., Any], caplog: pytest.LogCaptureFixture, log_format: str
) -> None:
    gateway: Gateway = await start_gateway(
        '[rules.cap]\naction = "capture"\n[rulesets.c]\nwhen = "always"\nrules = ["cap"]\n',
        log_format=log_format,
    )
    with caplog.at_level(logging.INFO, logger="waystone.request"):
        await gateway.client().chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            extra_headers={"X-Waystone-User": "alice", "X-Waystone-Group": "acme"},
        )
    [line] = [r.getMessage() for r in caplog.records if r.name == "waystone.request"]
    [row] = await gateway.rows()
    expected = {
        "request_id": row["id"],
        "route": "chat/completions",
        "user": "alice",
        "group": "acme",
        "model": "up/gpt-test",
        "status": 200,
        "outcome": "ok",
        "input_tokens": 12,
        "output_tokens": 5,
        "cost_usd": CHAT_COST,
        "latency_ms": round(row["latency_ms"], 2),
    }
    if log_format == "json":
        assert json.loads(line) == expected
    else:
        assert line == " ".join(f"{k}={v}" for k, v in expected.items())
    for secret in ("sk-fake-provider-key", "client-key-not-for-upstream", "tell me a secret"):
        assert secret not in line


async def test_an_unsampled_caller_is_not_traced_and_its_traceparent_goes_upstream_as_is(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced("")
    unsampled = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-00"
    await gateway.client().embeddings.create(
        model="embed-test", input="hi", extra_headers={"traceparent": unsampled}
    )
    await gateway.client().embeddings.create(model="embed-test", input="hi")
    await _flush(gateway)
    assert gateway.provider.seen[0].headers["traceparent"] == unsampled
    assert [(s.kind, s.trace_id == TRACE_ID) for s in receiver.spans] == [
        (CLIENT, False),
        (SERVER, False),
    ]


async def test_each_upstream_attempt_of_a_fallback_is_a_client_span(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    gateway = await traced(
        '[rules.fb]\nmodel = "up/error-model"\naction = "fallback"\nto = "up/gpt-test"\n'
        'retries = 1\n[rulesets.resilient]\nwhen = "always"\nrules = ["fb"]\n'
    )
    await gateway.client().chat.completions.create(model="error-model", messages=MESSAGES)
    await _flush(gateway)

    [server] = [s for s in receiver.spans if s.kind == SERVER]
    attempts = [s for s in receiver.spans if s.kind == CLIENT]
    assert [(s.name, s.attributes["http.response.status_code"]) for s in attempts] == [
        ("chat error-model", 500),
        ("chat error-model", 500),
        ("chat gpt-test", 200),
    ]
    assert {s.parent_span_id for s in attempts} == {server.span_id}
    assert len({s.span_id for s in attempts}) == 3
    # Each attempt lies within the request, one after the other.
    times = [server.start] + [t for s in attempts for t in (s.start, s.end)] + [server.end]
    assert times == sorted(times)
    assert [s.status_code for s in attempts] == [2, 2, 0]
    assert [s.attributes["gen_ai.provider.name"] for s in attempts] == ["openai"] * 3
    assert (server.status_code, server.attributes["waystone.outcome"]) == (0, "ok")
    assert server.attributes["gen_ai.response.model"] == "gpt-test"
    # The provider saw each attempt's own span as its parent.
    sent = [s.headers["traceparent"].split("-")[2] for s in gateway.provider.seen]
    assert sent == [s.span_id for s in attempts]


async def test_a_provider_that_cannot_be_reached_is_a_failed_client_span(
    traced: Callable[[str], Any], receiver: Receiver
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = await traced(
        f'[providers.down]\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
        'models = ["gone"]\n'
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            gateway.url + "v1/chat/completions",
            json={"model": "down/gone", "messages": MESSAGES},
            headers={"X-Waystone-User": "erin"},
        ) as resp,
    ):
        assert resp.status == 502
    await _flush(gateway)

    by_kind = _by_kind(receiver.spans)
    upstream, server = by_kind[CLIENT], by_kind[SERVER]
    assert upstream.parent_span_id == server.span_id
    assert (upstream.status_code, upstream.attributes["error.type"]) == (2, "UpstreamError")
    assert "http.response.status_code" not in upstream.attributes
    assert (upstream.attributes["server.address"], upstream.attributes["server.port"]) == (
        "127.0.0.1",
        port,
    )
    assert (server.status_code, server.attributes["http.response.status_code"]) == (2, 502)
