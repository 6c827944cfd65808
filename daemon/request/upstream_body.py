"""The documented edits to what goes upstream, made in one place.

A client's JSON body reaches the provider as sent, except for these edits (``proxy.py``
lists them; ``metadata.waystone`` is removed before, when the identity is read):

- ``model`` becomes the provider's name for the model of the attempt (or the model a
  rule chose);
- a token cap from the policy lowers every cap key the body sets (or sets the route's
  default key when it sets none);
- a streamed chat or completions request asks for usage (``stream_options.include_usage``).

The body is copied only when one of them changes it.
"""

from __future__ import annotations

from typing import Any

from waystone_cli.core.request_fields import CAP_KEYS

STREAM_USAGE_ROUTES = ("chat/completions", "completions")


def upstream_body(
    body: dict[str, Any], *, model: str, route: str, cap: int | None, stream: bool
) -> dict[str, Any]:
    """``body`` with the documented edits for one attempt at ``model``: ``body`` itself
    when none of them changes it."""
    edits: dict[str, Any] = {}
    if cap is not None:
        edits.update(cap_edits(body, route, cap))
    if streams_usage(route, stream):
        options = body.get("stream_options")
        edits["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    if body.get("model") != model and ("model" in body or model):
        edits["model"] = model
    return {**body, **edits} if edits else body


def cap_edits(body: dict[str, Any], route: str, cap: int) -> dict[str, Any]:
    """The cap keys of ``body`` as lowered to ``cap`` (the route's default key if it sets none)."""
    keys = [k for k in CAP_KEYS if k in body] or [_default_cap_key(route)]
    edits: dict[str, Any] = {}
    for key in keys:
        current = body.get(key)
        edits[key] = cap if not isinstance(current, int) or current > cap else current
    return edits


def streams_usage(route: str, stream: bool) -> bool:
    """Whether waystone asks the provider for a usage chunk."""
    return stream and route in STREAM_USAGE_ROUTES


def drops_usage_chunk(body: dict[str, Any], route: str, stream: bool) -> bool:
    """Whether the usage chunk waystone asked for must be removed: the client did not ask."""
    if not streams_usage(route, stream):
        return False
    options = body.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage") is True)


def _default_cap_key(route: str) -> str:
    return "max_output_tokens" if route == "responses" else "max_tokens"
