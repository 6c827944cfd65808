"""Calling a provider: over HTTP with the shared ``HttpClient``, or the built-in mock.

Both paths return an ``UpstreamReply`` whose body is an async iterator of byte chunks,
so the proxy streams, reads and releases them the same way.  The client's own
Authorization header never goes upstream: the provider's key (from its ``env:NAME``
reference) does.  Connection failures become 502 and timeouts 504.

Time: ``timeout_s`` bounds an answer read whole (its head and all of its body) and, for a
stream, the wait for its head; a stream may then last as long as it keeps sending, and
``idle_timeout_s`` bounds each silence in it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

from daemon.providers.http_body import AnswerTooLarge
from daemon.providers.http_client import HttpClient, Response
from daemon.providers.mock import mock_error, mock_json, mock_stream
from waystone_cli.core.config import ProviderConfig
from waystone_cli.core.config.warnings import key_variable
from waystone_cli.core.errors import UpstreamError, UpstreamTimeout

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

# Answer headers relayed with a provider's refusal: when to try again, which the OpenAI
# SDKs read (``retry-after-ms`` first).  The rest describe the provider, not the gateway.
_RELAYED_ON_ERROR = ("retry-after", "retry-after-ms")


class Span(Protocol):
    """What a provider needs of a traced attempt (``UpstreamSpan``), named here so that
    the providers' wing does not import telemetry, which reads the snapshot that holds
    providers."""

    def inject(self, headers: dict[str, str]) -> None: ...


class UpstreamReply:
    """A provider's answer: status, content type, and the body as chunks or read whole.

    An HTTP reply holds the client's ``Response`` and reads it only when asked (a JSON
    answer is read in one call, with no chunk iterator built); a mock reply carries its
    frames.  ``release()`` may be called more than once.
    """

    __slots__ = (
        "status",
        "content_type",
        "headers",
        "_frames",
        "_resp",
        "_name",
        "_deadline",
        "_idle_s",
    )

    def __init__(
        self,
        status: int,
        content_type: str,
        frames: AsyncIterator[bytes] | None = None,
        resp: Response | None = None,
        name: str = "",
        deadline: float | None = None,
        idle_s: float | None = None,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.headers: Mapping[str, str] = resp.headers if resp is not None else {}
        self._frames = frames
        self._resp = resp
        self._name = name
        self._deadline = deadline  # loop time by which an answer read whole must be in
        self._idle_s = idle_s  # the longest silence in a stream

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        if self._resp is not None:
            return _http_chunks(self._resp, self._name, self._idle_s)
        assert self._frames is not None
        return self._frames

    async def read(self) -> bytes:
        """The whole body."""
        if self._resp is not None:
            return await _http_read(self._resp, self._name, self._deadline)
        parts = [chunk async for chunk in self.chunks]
        return b"".join(parts)

    def release(self) -> None:
        if self._resp is not None:
            self._resp.release()  # idempotent

    def error_headers(self) -> dict[str, str]:
        """The headers of a refusal that go to the client with it."""
        return {k: v for k in _RELAYED_ON_ERROR if (v := self.headers.get(k)) is not None}


def provider_key(provider: ProviderConfig) -> str | None:
    """The provider's key; a key variable that is not set is an error, not "no key": the
    call would reach the provider without authorization."""
    var = key_variable(provider)
    if var is None:
        return provider.api_key
    key = os.environ.get(var)
    if not key:
        raise UpstreamError(
            f'provider "{provider.name}" has no API key: environment variable {var} is not set'
        )
    return key


def upstream_headers(
    own: Mapping[str, str], incoming: Mapping[str, str], content_type: str | None
) -> dict[str, str]:
    """The headers of a call: some of the client's, then the provider's own (``own_headers``)."""
    headers = {k: v for k in _FORWARDED if (v := incoming.get(k)) is not None}
    headers.update(own)
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def own_headers(provider: ProviderConfig) -> dict[str, str]:
    """The provider's configured headers and its key."""
    headers = dict(provider.headers)
    key = provider_key(provider)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


async def call_http(
    client: HttpClient,
    provider: ProviderConfig,
    route: str,
    data: bytes,
    headers: dict[str, str],
    method: str = "POST",
    *,
    max_bytes: int,
) -> UpstreamReply:
    url = _url(provider.base_url or "", route)
    deadline = asyncio.get_running_loop().time() + provider.timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            resp = await client.request(
                method,
                url,
                headers,
                data,
                connect_s=provider.connect_timeout_s,
                read_s=provider.timeout_s,
                max_bytes=max_bytes,
            )
    except TimeoutError as err:
        raise UpstreamTimeout(f'provider "{provider.name}" timed out') from err
    except (OSError, ValueError) as err:  # refused, reset, DNS, TLS; a bad base_url
        raise UpstreamError(
            f'provider "{provider.name}" is unreachable: {type(err).__name__}'
        ) from err
    content_type = resp.headers.get("content-type", "application/json")
    return UpstreamReply(
        resp.status,
        content_type,
        resp=resp,
        name=provider.name,
        deadline=deadline,
        idle_s=provider.idle_timeout_s,
    )


@functools.lru_cache(maxsize=1024)
def _url(base_url: str, route: str) -> str:
    return f"{base_url.rstrip('/')}/{route}"


async def _http_read(resp: Response, name: str, deadline: float | None) -> bytes:
    try:
        async with asyncio.timeout_at(deadline):
            return await resp.read()
    except (TimeoutError, OSError) as err:
        raise _read_error(err, name) from err
    finally:
        resp.release()


async def _http_chunks(resp: Response, name: str, idle_s: float | None) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.chunks(idle_s):
            yield chunk
    except (TimeoutError, OSError) as err:
        raise _read_error(err, name) from err
    finally:
        resp.release()


def _read_error(err: TimeoutError | OSError, name: str) -> UpstreamError:
    """Reading a reply's body failed: a timeout is a 504, a cut or an answer too large a 502."""
    if isinstance(err, TimeoutError):
        return UpstreamTimeout(f'provider "{name}" timed out')
    if isinstance(err, AnswerTooLarge):
        return UpstreamError(
            f'provider "{name}" sent an answer larger than {err.limit / (1 << 20):g} MiB'
            " ([server] max_response_mb)"
        )
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
