"""Errors as JSON responses (SPEC §10), rendered by the handlers themselves: in OpenAI's
envelope, or in Anthropic's on the Messages API's routes (``anthropic_error_as_response``),
so that each SDK raises its own exception classes.

There is no error middleware: aiohttp wraps every request of an app that has one in two
more coroutine layers (the middleware and its ``_fix_request_current_app``), which cost
a measurable share of a gateway's throughput.  Instead the
proxy routes catch errors where they already do (``proxy.json_route``), the other routes
are wrapped by ``openai_errors``, and paths or methods no route serves reach
``unmatched``, the last route, which answers 404 or 405 in the same envelope.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from daemon.state import OBSERVER
from waystone_cli.core.errors import ClusterUnavailable, PolicyBlocked, WaystoneError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNMATCHED_PATH = "/{path:.*}"


def error_as_response(request: web.Request, err: Exception) -> web.Response:
    """The response for an error a handler raised; call it from the ``except`` block (an
    unexpected error is counted, and its traceback logged once per cause)."""
    if isinstance(err, WaystoneError):
        return error_response(err)
    if isinstance(err, web.HTTPException):
        if err.status < 400:
            raise err
        return envelope(err.status, err.reason, "invalid_request_error", _http_code(err.status))
    _log_unexpected(request, err)
    return envelope(500, "internal error in the gateway", "server_error", "internal_error")


def anthropic_error_as_response(request: web.Request, err: Exception) -> web.Response:
    """``error_as_response`` in Anthropic's envelope, with the same statuses and headers."""
    if isinstance(err, WaystoneError):
        response = anthropic_envelope(err.status, err.message)
        _policy_headers(response, err)
        return response
    if isinstance(err, web.HTTPException):
        if err.status < 400:
            raise err
        return anthropic_envelope(err.status, err.reason)
    _log_unexpected(request, err)
    return anthropic_envelope(500, "internal error in the gateway")


def _log_unexpected(request: web.Request, err: Exception) -> None:
    # Once per cause: a client repeating a request that trips a bug cannot flood the log.
    request.app[OBSERVER].error_log.exception(
        "unexpected error on %s %s", request.method, request.path, exc_info=err
    )


def openai_errors(handler: Handler) -> Handler:
    """Wrap a handler so that what it raises is answered as ``error_as_response`` says."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as err:
            return error_as_response(request, err)

    return wrapped


async def unmatched(request: web.Request) -> web.Response:
    """The catch-all route: 405 (with ``Allow``) if another route serves this path with
    other methods, else 404."""
    allowed = {
        route.method
        for route in request.app.router.routes()
        if route.resource is not None
        and route.resource.canonical == request.path
        and route.method != "*"
    }
    anthropic = request.path.endswith(_ANTHROPIC_PATHS)
    if allowed:
        response = (
            anthropic_envelope(405, "Method Not Allowed")
            if anthropic
            else envelope(405, "Method Not Allowed", "invalid_request_error", "method_not_allowed")
        )
        response.headers["Allow"] = ",".join(sorted(allowed))
        return response
    if anthropic:
        return anthropic_envelope(404, "Not Found")
    return envelope(404, "Not Found", "invalid_request_error", "not_found")


# The Messages API's paths, whose 404 and 405 are in Anthropic's envelope.
_ANTHROPIC_PATHS = ("/messages", "/messages/count_tokens")


def error_response(err: WaystoneError) -> web.Response:
    response = envelope(err.status, err.message, err.type, err.code, err.param)
    _policy_headers(response, err)
    return response


def _policy_headers(response: web.Response, err: WaystoneError) -> None:
    if isinstance(err, PolicyBlocked):
        response.headers.update(err.headers)
    if isinstance(err, PolicyBlocked | ClusterUnavailable) and err.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))


def envelope(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status)


# Anthropic's error types by status; any other 4xx is an invalid request, 5xx an API error.
ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_envelope(status: int, message: str) -> web.Response:
    kind = ANTHROPIC_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(body, status=status)


def _http_code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
        status, "invalid_request"
    )
