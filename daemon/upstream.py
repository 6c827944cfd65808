"""Calling a provider: over HTTP with the shared ``HttpClient``, or the built-in mock.

Both paths return an ``UpstreamReply`` whose body is an async iterator of byte chunks,
so the proxy streams, reads and releases them the same way.  The client's own
Authorization header never goes upstream: the provider's key (from its ``env:NAME``
reference) does.  Connection failures become 502 and timeouts 504.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from daemon.http_client import HttpClient, Response
from daemon.mock import mock_error, mock_json, mock_stream
from waystone_cli.core.config import ProviderConfig
from waystone_cli.core.errors import UpstreamError, UpstreamTimeout
from waystone_cli.core.secrets import resolve_key

# Request headers worth passing to a provider; everything else (hop-by-hop headers,
# the client's Authorization, cookies, our identity headers) stays here.
_FORWARDED = (
    "accept",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "traceparent",
    "tracestate",
)


class UpstreamReply:
    """A provider's answer: status, content type, and the body as chunks or read whole.

    An HTTP reply holds the client's ``Response`` and reads it only when asked (a JSON
    answer is read in one call, with no chunk iterator built); a mock reply carries its
    frames.  ``release()`` may be called more than once.
    """

    __slots__ = ("status", "content_type", "_frames", "_resp", "_name")

    def __init__(
        self,
        status: int,
        content_type: str,
        frames: AsyncIterator[bytes] | None = None,
        resp: Response | None = None,
        name: str = "",
    ) -> None:
        self.status = status
        self.content_type = content_type
        self._frames = frames
        self._resp = resp
        self._name = name

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        if self._resp is not None:
            return _http_chunks(self._resp, self._name)
        assert self._frames is not None
        return self._frames

    async def read(self) -> bytes:
        """The whole body."""
        if self._resp is not None:
            return await _http_read(self._resp, self._name)
        parts = [chunk async for chunk in self.chunks]
        return b"".join(parts)

    def release(self) -> None:
        if self._resp is not None:
            self._resp.release()  # idempotent


def provider_key(provider: ProviderConfig) -> str | None:
    return resolve_key(provider.api_key, os.environ)


def upstream_headers(
    provider: ProviderConfig, incoming: Mapping[str, str], content_type: str | None
) -> dict[str, str]:
    headers = {k: v for k in _FORWARDED if (v := incoming.get(k)) is not None}
    headers.update(_own_headers(provider))
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _own_headers(provider: ProviderConfig) -> dict[str, str]:
    """The provider's configured headers and its key, built once per provider config
    (a reload builds new ``ProviderConfig`` objects, so a changed key is picked up)."""
    cached = _OWN_HEADERS.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    headers = dict(provider.headers)
    key = provider_key(provider)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if len(_OWN_HEADERS) >= 256:
        _OWN_HEADERS.clear()
    _OWN_HEADERS[id(provider)] = (provider, headers)
    return headers


# id(provider) -> (provider, headers); the provider is kept so its id is not reused.
_OWN_HEADERS: dict[int, tuple[ProviderConfig, dict[str, str]]] = {}


async def call_http(
    client: HttpClient,
    provider: ProviderConfig,
    route: str,
    data: bytes,
    headers: dict[str, str],
    method: str = "POST",
) -> UpstreamReply:
    url = _url(provider.base_url or "", route)
    try:
        resp = await client.request(
            method,
            url,
            headers,
            data,
            connect_s=provider.connect_timeout_s,
            read_s=provider.timeout_s,
        )
    except TimeoutError as err:
        raise UpstreamTimeout(f'provider "{provider.name}" timed out') from err
    except (OSError, ValueError) as err:  # refused, reset, DNS, TLS; a bad base_url
        raise UpstreamError(
            f'provider "{provider.name}" is unreachable: {type(err).__name__}'
        ) from err
    content_type = resp.headers.get("content-type", "application/json")
    return UpstreamReply(resp.status, content_type, resp=resp, name=provider.name)


@functools.lru_cache(maxsize=1024)
def _url(base_url: str, route: str) -> str:
    return f"{base_url.rstrip('/')}/{route}"


async def _http_read(resp: Response, name: str) -> bytes:
    try:
        return await resp.read()
    except (TimeoutError, OSError) as err:
        raise _read_error(err, name) from err
    finally:
        resp.release()


async def _http_chunks(resp: Response, name: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.chunks():
            yield chunk
    except (TimeoutError, OSError) as err:
        raise _read_error(err, name) from err
    finally:
        resp.release()


def _read_error(err: TimeoutError | OSError, name: str) -> UpstreamError:
    """Reading a reply's body failed: a timeout is a 504, a cut a 502."""
    if isinstance(err, TimeoutError):
        return UpstreamTimeout(f'provider "{name}" timed out')
    return UpstreamError(f'provider "{name}" cut the response: {type(err).__name__}')


async def call_mock(route: str, body: Mapping[str, Any], model: str, stream: bool) -> UpstreamReply:
    failure = mock_error(route, body, model)
    if failure is not None:
        status, payload = failure
        return UpstreamReply(status, "application/json", _frames([json.dumps(payload).encode()]))
    if stream:
        return UpstreamReply(200, "text/event-stream", _frames(mock_stream(route, body, model)))
    status, payload = mock_json(route, body, model)
    return UpstreamReply(status, "application/json", _frames([json.dumps(payload).encode()]))


async def _frames(frames: Iterable[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame
        await asyncio.sleep(0)  # let other requests run, as a network stream would
