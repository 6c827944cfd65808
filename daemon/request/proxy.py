"""The request path of every proxied route, step by step.

read the body → authorize → identity → entities → model → policy → reserve → forward
(with retries and fallbacks) → relay (JSON or SSE) → settle and record.

The only edits made to a client's body are the documented ones: ``metadata.waystone``
is removed, the model is replaced by the provider's name for it (or the model a rule
chose), a token cap may be lowered, and streamed chat/completions ask for usage. The
identity is removed when it is read (``core.identity.pop_identity``); the other edits
are made in one function, ``daemon.request.upstream_body.upstream_body``.  Anthropic's
Messages API runs this same path with its own body reading and error envelope
(``daemon.request.messages``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from daemon.errors import Handler, anthropic_error_as_response, error_as_response
from daemon.request.body import decode_json, read_body, read_multipart
from daemon.request.call import Call
from daemon.request.eviction import recall
from daemon.request.forward import Prepared, forward
from daemon.request.policy_step import apply_policy
from daemon.state import CONFIG, ENTITIES
from waystone_cli.core import jsontext
from waystone_cli.core.errors import AuthError, InvalidRequest, WaystoneError
from waystone_cli.core.identity import (
    Identity,
    combine,
    identity_from_headers,
    pop_identity,
    without_metadata,
)
from waystone_cli.core.models import route_api, speaks

JSON_ROUTES = ("chat/completions", "completions", "embeddings", "responses", "moderations")
STREAMING_ROUTES = ("chat/completions", "completions", "responses")


def json_route(route: str) -> Handler:
    return proxied_route(route, _prepare_json)


def multipart_route(route: str) -> Handler:
    return proxied_route(route, _prepare_multipart)


Render = Callable[[web.Request, Exception], web.Response]


def proxied_route(
    route: str, prepare: Callable[[Call], Awaitable[Prepared]], render: Render = error_as_response
) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            call = Call(request, route)
        except Exception as err:  # a bug, but still answered in the envelope
            return render(request, err)
        return await run_call(call, prepare, render)

    return handler


async def run_call(
    call: Call, prepare: Callable[[Call], Awaitable[Prepared]], render: Render = error_as_response
) -> web.StreamResponse:
    """Run one call; record its outcome whatever happens, and answer an error in the
    route's envelope (``daemon.errors``; a hang-up's cancellation propagates)."""
    try:
        authorize(call)
        return await forward(call, await prepare(call))
    except asyncio.CancelledError:
        call.record.status = 499
        call.record.outcome = "client_closed"
        raise
    except Exception as err:
        call.fail(err)
        return render(call.request, err)
    except BaseException as err:
        call.fail(err)
        raise
    finally:
        call.finish()


def authorize(call: Call) -> None:
    snapshot = call.snapshot
    if snapshot.key_hashes:
        headers = call.request.headers
        header = headers.get("Authorization")
        if header is None:  # Anthropic's SDKs may send the key as x-api-key
            scheme, token = "bearer", headers.get("x-api-key", "")
        else:
            scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not snapshot.key_allowed(token.strip()):
            raise AuthError("invalid or missing gateway key (Authorization: Bearer <key>)")
    call.authenticated = True


def body_limit(call: Call) -> float:
    return call.snapshot.config.server.max_body_mb


async def _prepare_json(call: Call) -> Prepared:
    body = decode_json(await read_body(call.request, body_limit(call)))
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    identity, body = pop_identity(body)
    await attach_identity(call, identity)
    model = body.get("model")
    resolve(call, model, required=call.record.route != "moderations")
    call.record.stream = bool(body.get("stream")) and call.record.route in STREAMING_ROUTES
    call.input_content = _input_of(body)
    cap = apply_policy(call, body)
    return Prepared(payload=body, body=body, cap=cap)


async def _prepare_multipart(call: Call) -> Prepared:
    form = await read_multipart(call.request, body_limit(call))
    meta = form.pop_field("metadata")
    await attach_identity(call, _multipart_identity(meta) if meta is not None else Identity())
    resolve(call, form.field("model"), required=True)
    body = {"model": form.field("model")}
    apply_policy(call, body)  # a form's token cap is not edited
    return Prepared(payload=form, body=body, cap=None)


def _multipart_identity(meta: str) -> Identity:
    """The multipart ``metadata`` field carries ``{"waystone": ...}`` or the identity itself."""
    try:
        decoded = jsontext.loads_client(meta)
    except jsontext.ClientJSONError:
        decoded = None
    if isinstance(decoded, dict) and "waystone" in decoded:
        identity, _ = pop_identity({"metadata": decoded})
        return identity
    identity, _ = pop_identity({"metadata": {"waystone": meta}})
    return identity


async def attach_identity(
    call: Call, body_identity: Identity, fallback: Callable[[Identity], Identity] | None = None
) -> None:
    """Identify the call's user and group; ``fallback`` may name a user when neither the
    body's identity nor the headers do."""
    headers = call.request.headers
    user, group = headers.get("X-Waystone-User"), headers.get("X-Waystone-Group")
    identity = (
        body_identity
        if user is None and group is None
        else combine(body_identity, identity_from_headers(user, group))
    )
    if fallback is not None:
        identity = fallback(identity)
    config = call.snapshot.config
    if not config.server.merges_request_metadata:
        identity = without_metadata(identity)
    if config.server.require_identity and identity.user is None and identity.group is None:
        raise InvalidRequest(
            "this gateway requires an identity: set metadata.waystone with a user or group"
        )
    await recall(call.app, identity)  # an evicted user or group comes back first
    call.entities = call.app[ENTITIES].observe(identity, config, call.now)
    rec = call.record
    rec.user_id = identity.user.id if identity.user else None
    rec.group_id = identity.group.id if identity.group else None
    rec.user_metadata = (
        dict(identity.user.metadata) if identity.user and identity.user.metadata else None
    )
    rec.group_metadata = (
        dict(identity.group.metadata) if identity.group and identity.group.metadata else None
    )


def resolve(call: Call, model: Any, *, required: bool) -> None:
    rec = call.record
    if model is None and not required:
        providers = list(call.snapshot.config.providers.values())
        if len(providers) != 1:
            raise InvalidRequest(
                "model is required when more than one provider is configured", param="model"
            )
        rec.provider = providers[0].name
        return
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model must be a non-empty string", param="model")
    api = route_api(rec.route)
    provider, name = call.snapshot.models.resolve(model, api)
    rec.provider, rec.model = provider.name, name
    rec.requested_model = f"{provider.name}/{name}"
    if not speaks(provider, api):
        raise InvalidRequest(
            f'model "{model}" is served by provider "{provider.name}" of kind'
            f' "{provider.kind}", which does not answer {_API_NAMES[api]}',
            param="model",
        )


_API_NAMES = {
    "anthropic": "Anthropic's Messages API (/v1/messages): name a model of an anthropic provider",
    "openai": "OpenAI's API: call it through /v1/messages",
}


def _input_of(body: dict[str, Any]) -> Any:
    for key in ("messages", "input", "prompt"):
        if key in body:
            return body[key]
    return None


async def models_handler(request: web.Request) -> web.Response:
    """``GET /v1/models`` and ``GET /v1/models/{model_id}``, in the shape of the client's API:
    Anthropic's when the request carries ``anthropic-version`` (its SDKs always send it, and
    OpenAI's never do), OpenAI's otherwise; errors in the same API's envelope."""
    api = "anthropic" if "anthropic-version" in request.headers else "openai"
    try:
        admit(request, "models")
        models = request.app[CONFIG].current.models
        model_id = request.match_info.get("model_id")
        answer = models.listing(api) if model_id is None else models.describe(model_id, api)
    except Exception as err:
        if api == "anthropic":
            return anthropic_error_as_response(request, err)
        return error_as_response(request, err)
    return web.json_response(answer)


def admit(request: web.Request, route: str) -> None:
    """Authorize a request that calls no model; a refused one still gets its ledger row."""
    if not request.app[CONFIG].current.key_hashes:
        return
    call = Call(request, route)
    try:
        authorize(call)
    except WaystoneError as err:
        call.fail(err)
        call.finish()
        raise
