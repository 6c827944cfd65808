"""What a valid config may still get wrong at run time, said before traffic finds out.

A provider key given as ``env:VAR`` is read from the environment of the process that
serves; a variable that is not set there means every call to that provider fails (the
daemon answers 502 naming the variable and sends nothing upstream).  ``config
validate``, ``serve`` and ``/readyz`` all report these from this one function.
"""

from __future__ import annotations

from collections.abc import Mapping

from waystone_cli.core.config.snapshot import Config, ProviderConfig


def key_variable(provider: ProviderConfig) -> str | None:
    """The environment variable named by an ``env:VAR`` key reference, if any."""
    ref = provider.api_key
    return ref[4:] if ref is not None and ref.startswith("env:") else None


def secret_variable(ref: str | None) -> str | None:
    """The variable an ``env:VAR`` secret reference names; None for a literal or no value."""
    return ref[4:] if ref is not None and ref.startswith("env:") else None


def config_warnings(config: Config, environ: Mapping[str, str]) -> list[str]:
    """One line per problem, each naming the TOML path it comes from."""
    warnings = []
    for name, provider in config.providers.items():
        var = key_variable(provider)
        if var is not None and not environ.get(var):
            warnings.append(
                f"providers.{name}.api_key: environment variable {var} is not set "
                f'(calls to provider "{name}" will fail)'
            )
    var = secret_variable(config.alerts.secret)
    if config.alerts.webhook and var is not None and not environ.get(var):
        warnings.append(
            f"alerts.secret: environment variable {var} is not set (webhook events are sent"
            " without X-Waystone-Signature)"
        )
    return warnings
