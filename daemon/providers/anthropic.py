"""A provider of ``kind = "anthropic"``: Anthropic's Messages API at its ``base_url``.

Its ``base_url`` is the API's root (``https://api.anthropic.com``), as the Anthropic SDK
takes it: the route goes under ``/v1`` (a ``base_url`` that already ends in ``/v1``, as
OpenAI-style ones do, is taken as meaning the same).  The provider key goes as ``x-api-key``; the
client's ``anthropic-version`` goes along (``2023-06-01`` when it sent none), and so does
its ``anthropic-beta``; nothing else of the client's auth does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from daemon.providers.jsonio import encode
from daemon.providers.upstream import Span, UpstreamReply, call_http, provider_key
from waystone_cli.core.config import ProviderConfig

if TYPE_CHECKING:
    from daemon.providers.http_client import HttpClient

DEFAULT_VERSION = "2023-06-01"
_FORWARDED = ("accept", "anthropic-beta", "traceparent", "tracestate")


class HttpAnthropic:
    """``send`` as ``HttpOpenAI``'s: the payload already edited, the client's headers."""

    def __init__(self, config: ProviderConfig, max_bytes: int) -> None:
        self.config = config
        self.max_bytes = max_bytes
        self.own_headers: dict[str, str] | None = None  # built at the first call
        root = (config.base_url or "").rstrip("/")
        self.prefix = "" if root.endswith("/v1") else "v1/"

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
        own = self.own_headers
        if own is None:
            own = self.own_headers = anthropic_headers(self.config)
        headers = {k: v for k in _FORWARDED if (v := incoming.get(k)) is not None}
        headers["anthropic-version"] = incoming.get("anthropic-version") or DEFAULT_VERSION
        headers.update(own)
        headers["Content-Type"] = "application/json"
        if span is not None:
            span.inject(headers)
        return call_http(
            client,
            self.config,
            self.prefix + route,
            encode(payload),
            headers,
            max_bytes=self.max_bytes,
        )


def anthropic_headers(provider: ProviderConfig) -> dict[str, str]:
    """The provider's configured headers and its key."""
    headers = dict(provider.headers)
    key = provider_key(provider)
    if key:
        headers["x-api-key"] = key
    return headers
