"""What ``http_client`` sends: a URL split once into where to connect and what to ask,
and the head of an HTTP/1.1 request (``Host``, ``Content-Length``, ``Accept-Encoding``
set here, then the caller's headers, none of which may hold a line break)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

# Set by the client; the same names given in ``headers`` are left out.
_OWN_HEADERS = frozenset({"host", "content-length", "accept-encoding", "connection"})


class Target(NamedTuple):
    """Where a URL points: its connection (tls, host, port) and the request line's parts."""

    tls: bool
    host: str
    port: int
    authority: str  # the Host header
    path: str  # the request target: path and query

    @property
    def key(self) -> tuple[bool, str, int]:
        return (self.tls, self.host, self.port)


@lru_cache(maxsize=1024)
def target(url: str) -> Target:
    """A URL split once, not on every request."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    port = parts.port or default
    host = parts.hostname
    authority = f"[{host}]" if ":" in host else host
    if port != default:
        authority += f":{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(tls, host, port, authority, path)


def request_head(
    method: str, where: Target, headers: Mapping[str, str], length: int | None
) -> bytes:
    lines = [f"{method} {where.path} HTTP/1.1\r\nHost: {where.authority}\r\n"]
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("Accept-Encoding: gzip, deflate\r\n")
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} has a line break")
        if name.lower() not in _OWN_HEADERS:
            lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()
