"""The provider seam: one object per configured provider, chosen by its ``kind``.

A provider sends one call and returns an ``UpstreamReply``, whatever it speaks.  The
snapshot builds one per configured provider (``providers_of``), so the request path
never asks which kind it holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from daemon.providers.anthropic import HttpAnthropic
from daemon.providers.jsonio import encode
from daemon.providers.upstream import (
    Span,
    UpstreamReply,
    call_http,
    call_mock,
    own_headers,
    upstream_headers,
)
from daemon.request.body import Form
from waystone_cli.core.config import Config, ProviderConfig

if TYPE_CHECKING:
    from daemon.providers.http_client import HttpClient


class HttpOpenAI:
    """A provider that speaks OpenAI's HTTP API at its ``base_url``.

    ``send`` takes the payload (a JSON body or a ``Form``) already edited for upstream,
    the client's headers (some go upstream) and, when tracing, the attempt's span, which
    puts its context in the headers.
    """

    def __init__(self, config: ProviderConfig, max_bytes: int) -> None:
        self.config = config
        self.max_bytes = max_bytes
        # Built at the first call, once per snapshot (a reload picks up a changed key):
        # a key variable that is not set fails that call, not the reload.
        self.own_headers: dict[str, str] | None = None

    def send(
        self,
        client: HttpClient,
        route: str,
        payload: Any,
        model: str,
        stream: bool,
        incoming: Mapping[str, str],
        span: Span | None,
    ) -> Awaitable[UpstreamReply]:
        # A plain function returning the call's coroutine: no extra await per request.
        if isinstance(payload, Form):
            data, content_type = payload.encode()
        else:
            data, content_type = encode(payload), "application/json"
        own = self.own_headers
        if own is None:
            own = self.own_headers = own_headers(self.config)
        headers = upstream_headers(own, incoming, content_type)
        if span is not None:
            span.inject(headers)
        return call_http(client, self.config, route, data, headers, max_bytes=self.max_bytes)


class Mock:
    """The built-in offline provider (``daemon.providers.mock``)."""

    def __init__(self, config: ProviderConfig, max_bytes: int) -> None:
        self.config = config

    def send(  # the client's headers and the span mean nothing offline
        self, client: HttpClient, route: str, payload: Any, model: str, stream: bool, *_: object
    ) -> Awaitable[UpstreamReply]:
        if isinstance(payload, Form):  # a form's answer is never streamed
            return call_mock(route, payload.fields(), model, stream=False)
        return call_mock(route, payload, model, stream=stream)


# A new kind is a class with the same ``send`` and a line here.
Provider = HttpOpenAI | Mock | HttpAnthropic
KINDS: dict[str, Callable[[ProviderConfig, int], Provider]] = {
    "openai": HttpOpenAI,
    "mock": Mock,
    "anthropic": HttpAnthropic,
}


def providers_of(config: Config) -> dict[str, Provider]:
    """One provider object per configured provider, by name."""
    max_bytes = config.server.max_response_bytes
    return {
        name: KINDS.get(p.kind, HttpOpenAI)(p, max_bytes) for name, p in config.providers.items()
    }
