"""Forwarding a prepared request upstream and relaying the answer.

Attempts follow the decision's plan: the chosen model (retried on retryable errors as
a ``fallback`` rule allows), then each fallback model.  A streamed answer falls back
only before its first byte reached the client, which holds because streaming starts
only once a provider has answered 200.  SSE is relayed event by event as it arrives
(never buffered whole) while usage is read on the side; the usage-only chunk that
waystone asked for is removed when the client did not ask for it itself.
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from daemon.providers.jsonio import decode_reply
from daemon.providers.upstream import UpstreamReply
from daemon.request.body import Form
from daemon.request.call import Call
from daemon.request.checks import check_output, held_back
from daemon.request.stream import StreamWatch
from daemon.request.upstream_body import drops_usage_chunk, upstream_body
from daemon.state import HTTP, OBSERVER
from waystone_cli.core.config import ProviderConfig
from waystone_cli.core.errors import UpstreamError
from waystone_cli.core.messages import Tally, cut_notice, output_text
from waystone_cli.core.models import route_api, speaks
from waystone_cli.core.sse import encode_event
from waystone_cli.core.usage import Usage, estimate_tokens, usage_from_body
from waystone_cli.core.usage_bounds import TOKEN_ROUTES, settle_usage

if TYPE_CHECKING:
    from daemon.telemetry.tracing import UpstreamSpan

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})


class Prepared(NamedTuple):
    """A request ready to forward: what is sent (before the edits of each attempt), the
    JSON the policy saw (usage is settled against it) and the policy's token cap."""

    payload: dict[str, Any] | Form
    body: dict[str, Any]
    cap: int | None


async def forward(call: Call, prepared: Prepared) -> web.StreamResponse:
    attempts = plan_attempts(call)
    sent: tuple[str, Any] | None = None  # the last model's edited payload: a retry reuses it
    for i, (provider, model) in enumerate(attempts):
        last = i == len(attempts) - 1
        call.record.provider, call.record.model = provider.name, model
        if sent is None or sent[0] != model:
            sent = (model, _payload(call, prepared, model))
        try:
            reply = await _send(call, provider, model, sent[1])
        except UpstreamError:
            if last:
                raise
            continue
        if reply.status in RETRYABLE and not last:
            reply.release()
            continue
        if reply.status == 200 and call.record.stream:
            return await relay_stream(call, reply, prepared.body)
        return await relay_json(call, reply, prepared.body)
    raise AssertionError("plan_attempts returns at least one attempt")


def plan_attempts(call: Call) -> list[tuple[ProviderConfig, str]]:
    config = call.snapshot.config
    rec = call.record
    provider = config.providers[rec.provider or ""]
    first = (provider, rec.model or "")
    decision = call.decision
    if decision is None or not decision.fallbacks:
        return [first]
    retries = max(f.retries for f in decision.fallbacks)
    plan = [first] * (1 + retries)
    api = route_api(rec.route)
    for fallback in decision.fallbacks:
        target = call.snapshot.models.resolve(fallback.to)
        if speaks(target[0], api):  # never to a provider that does not speak the route's API
            plan.append(target)
    return plan


def _payload(call: Call, prepared: Prepared, model: str) -> dict[str, Any] | Form:
    payload = prepared.payload
    if isinstance(payload, Form):
        return payload.with_field("model", model)
    rec = call.record
    return upstream_body(payload, model=model, route=rec.route, cap=prepared.cap, stream=rec.stream)


async def _send(call: Call, provider: ProviderConfig, model: str, payload: Any) -> UpstreamReply:
    started = time.perf_counter()
    trace = call.trace
    upstream = trace.upstream(provider, model, call.record.route) if trace is not None else None
    try:
        reply = await _dispatch(call, provider, model, payload, upstream)
    except BaseException as err:
        if isinstance(err, UpstreamError):
            call.app[OBSERVER].provider_failed(provider.name, err.message)
        if upstream is not None:
            upstream.failed(err, call.snapshot.redactor)
        raise
    finally:
        call.upstream_s += time.perf_counter() - started
    if reply.status >= 500 or reply.status == 429:
        call.app[OBSERVER].provider_failed(provider.name, f"answered HTTP {reply.status}")
    if upstream is not None:
        upstream.replied(reply)
    return reply


async def _dispatch(
    call: Call, provider: ProviderConfig, model: str, payload: Any, upstream: UpstreamSpan | None
) -> UpstreamReply:
    rec = call.record
    return await call.snapshot.providers[provider.name].send(
        call.app[HTTP], rec.route, payload, model, rec.stream, call.request.headers, upstream
    )


async def relay_json(call: Call, reply: UpstreamReply, body_in: dict[str, Any]) -> web.Response:
    started = time.perf_counter()
    try:
        data = await reply.read()
    finally:
        call.upstream_s += time.perf_counter() - started
        reply.release()
    rec = call.record
    rec.status = reply.status
    call.mark_first_byte()
    if reply.status != 200:
        # An error page may echo the request's headers, the provider key among them.
        data = call.snapshot.redactor.data(data)
        rec.outcome = "upstream_error"
        rec.error = data[:2000].decode("utf-8", "replace")
        headers = call.response_headers(reply.content_type)
        headers.update(reply.error_headers())
        return web.Response(body=data, status=reply.status, headers=headers)
    body = decode_reply(data)
    if call.trace is not None and isinstance(body, dict):
        call.trace.note(body)
    _settle_json_usage(call, body_in, body, data)
    decision = call.decision
    if isinstance(body, dict) and (
        rec.capture or (decision is not None and decision.output_checks)
    ):
        call.output_text = _output_text(body)
        await check_output(call, call.output_text)
    headers = call.response_headers(reply.content_type)
    # As the ledger counts it: unpriced only when tokens were used at an unknown price.
    cost = rec.cost_usd if rec.cost_usd is not None else Decimal(0)
    headers["x-waystone-cost-usd"] = f"{cost:f}" if rec.priced else "unpriced"
    return web.Response(body=data, status=200, headers=headers)


async def relay_stream(
    call: Call, reply: UpstreamReply, body_in: dict[str, Any]
) -> web.StreamResponse:
    rec = call.record
    rec.status = 200
    headers = call.response_headers("text/event-stream")
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(status=200, headers=headers)
    hold = held_back(call)
    decision = call.decision
    full = (
        call.trace is not None
        or rec.capture
        or bool(decision is not None and decision.output_checks)
    )
    drop_usage = drops_usage_chunk(body_in, rec.route, rec.stream)
    watch = StreamWatch(rec.route, drop_usage=drop_usage, full=full, trace=call.trace)
    pending: list[bytes] = []
    try:
        chunks = reply.chunks
        while True:
            # The wait for each chunk is upstream time, not the gateway's overhead (a
            # slow model pauses seconds between chunks).  Timed here, in the loop, not
            # by a wrapping async generator: that would add a generator to every stream
            # and a resumption of it to every chunk.
            started = time.perf_counter()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            finally:
                call.upstream_s += time.perf_counter() - started
            out = watch.feed(chunk)
            if not out:
                continue
            if hold:
                pending.append(out)
                continue
            if not response.prepared:
                await response.prepare(call.request)
            call.mark_first_byte()
            await response.write(out)
        await _end_stream(call, response, watch, pending if hold else None, checked=full)
    except UpstreamError as err:
        if not response.prepared:
            raise
        rec.outcome, rec.error = "upstream_cut", err.message
        await _tell_cut(response, rec.route, err.message)
    except ConnectionResetError:
        rec.outcome, rec.error = "client_closed", "the client closed the connection"
    finally:
        reply.release()
        _settle_stream_usage(call, body_in, watch.finish())
    return response


async def _tell_cut(response: web.StreamResponse, route: str, message: str) -> None:
    """End a cut stream with the route's error event, if its API has one."""
    notice = cut_notice(route, message)
    if notice is None:
        return
    with contextlib.suppress(ConnectionResetError):  # the client left too: nothing to tell
        await response.write(encode_event(notice, "error"))


async def _end_stream(
    call: Call,
    response: web.StreamResponse,
    watch: StreamWatch,
    held: list[bytes] | None,
    *,
    checked: bool,
) -> None:
    """Run the output checks on the whole text and close the stream; ``held`` is what a
    blocking check kept back (None when the stream went out as it came)."""
    if held is not None:
        # A blocking output check holds the stream back: nothing reached the
        # client yet, so a failed check can still answer with a clean error.
        await check_output(call, watch.tally.text)
        await response.prepare(call.request)
        call.mark_first_byte()
        await response.write(b"".join(held))
    elif checked:
        await check_output(call, watch.tally.text)  # flag-only checks, after the fact
    if not response.prepared:
        await response.prepare(call.request)
    await response.write_eof()


def _settle_stream_usage(call: Call, body_in: dict[str, Any], tally: Tally) -> None:
    if call.record.capture:  # joined only for the row: the text may be as long as the limit
        call.output_text = tally.text
    output_estimate = tally.estimate_output_tokens()
    reported = tally.usage
    if reported is None:  # cut short: what it did report, the output estimated
        cut = tally.cut_usage(output_estimate)
        if cut is not None:
            _settle_usage(call, body_in, cut, output_estimate, estimated=True)
            return
    _settle_usage(call, body_in, reported, output_estimate)


def _settle_json_usage(call: Call, body_in: dict[str, Any], body: Any, data: bytes) -> None:
    route = call.record.route
    reported = usage_from_body(route, body) if isinstance(body, dict) else None
    if reported is None and route not in TOKEN_ROUTES:
        return  # moderations, audio, images: answers that count no tokens
    text = _output_text(body) if isinstance(body, dict) else data.decode("utf-8", "replace")
    _settle_usage(call, body_in, reported, estimate_tokens(text))


def _settle_usage(
    call: Call,
    body_in: dict[str, Any],
    reported: Usage | None,
    output_estimate: int,
    *,
    estimated: bool = False,
) -> None:
    """What the provider reported, if plausible for ``body_in``; capped or estimated if not
    (``estimated``: partly estimated already)."""
    rec = call.record
    settled = settle_usage(reported, route=rec.route, body=body_in, output_estimate=output_estimate)
    call.set_usage(settled.usage, estimated=settled.estimated or estimated)
    if settled.note is not None and rec.error is None:
        rec.error = settled.note


def _output_text(body: dict[str, Any]) -> str:
    """The generated text of an answer (for checks and datasets)."""
    if "content" in body and body.get("type") == "message":
        return output_text(body)
    parts: list[str] = []
    for choice in body.get("choices") or []:
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                parts.append(message["content"])
            elif isinstance(choice.get("text"), str):
                parts.append(choice["text"])
    for item in body.get("output") or []:
        if isinstance(item, dict):
            for content in item.get("content") or []:
                if isinstance(content, dict) and isinstance(content.get("text"), str):
                    parts.append(content["text"])
    return "".join(parts)
