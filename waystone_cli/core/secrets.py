"""The secrets a config knows, and their redaction from text that leaves the gateway.

A provider's error page may echo the request headers it received (the provider key
among them), and a ``base_url`` may carry credentials (``https://user:pass@host/v1``).
What the gateway passes on (a relayed error body), records (``requests.error``), logs
and puts in spans goes through the ``Redactor`` of the config snapshot in force, which
knows every configured secret:

- each provider's key (an ``env:NAME`` reference resolved when the snapshot is built),
  the credentials in its ``base_url`` and the values of its configured ``headers``;
- the gateway keys' stored hashes and the values of ``[otel] headers``;
- the ``[alerts]`` signing secret (resolved like a provider key) and the webhook URL,
  which for Slack-style incoming webhooks is itself the credential.

Values shorter than ``MIN_SECRET_LEN`` are not treated as secrets: replacing every
occurrence of a two-letter placeholder key would garble the text for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from waystone_cli.core.config import Config
from waystone_cli.core.config.warnings import key_variable, secret_variable

REDACTED = "[redacted]"
MIN_SECRET_LEN = 8


@dataclass(frozen=True)
class Redactor:
    """Replaces each known secret with ``[redacted]``, longest first (so a secret that
    contains another one is replaced whole)."""

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> Redactor:
        found = {v for v in values if len(v) >= MIN_SECRET_LEN}
        return cls(tuple(sorted(found, key=lambda v: (-len(v), v))))

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in self.secrets:
            encoded = secret.encode()
            if encoded in data:
                data = data.replace(encoded, REDACTED.encode())
        return data


def strip_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` part of its authority."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def config_secrets(config: Config, environ: Mapping[str, str]) -> Iterator[str]:
    """Every secret ``config`` holds or points at (see the module's docstring)."""
    for provider in config.providers.values():
        var = key_variable(provider)
        key = provider.api_key if var is None else environ.get(var)
        if key:
            yield key
        yield from provider.headers.values()
        if provider.base_url:
            yield from _url_credentials(provider.base_url)
    for key_config in config.keys.values():
        yield key_config.hash
        yield key_config.hash.partition(":")[2]  # the bare digest
    yield from config.otel.headers.values()
    secret = alerts_secret(config, environ)
    if secret:
        yield secret
    if config.alerts.webhook:
        yield config.alerts.webhook


def alerts_secret(config: Config, environ: Mapping[str, str]) -> str | None:
    """The key the webhook's signature is made with: ``[alerts] secret`` as written, or
    the variable an ``env:NAME`` names; None when unset (events then go unsigned)."""
    ref = config.alerts.secret
    var = secret_variable(ref)
    return (environ.get(var) or None) if var is not None else ref


def _url_credentials(url: str) -> Iterator[str]:
    """The ``user:password`` of a URL, and its password alone (as given and decoded)."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if not at:
        return
    password = userinfo.partition(":")[2]
    for value in (userinfo, unquote(userinfo), password, unquote(password)):
        if value:
            yield value
