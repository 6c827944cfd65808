"""The fields of a client's body that a request's reservation reads, checked first.

Before a request is forwarded, its estimated usage (the input estimate plus its token
cap for each choice asked for) is reserved against every budget that applies, and held
while the request is in flight.  A cap that is negative, fractional, a boolean or beyond
any model would make that estimate negative or overflow it, and a negative reservation
opens a hole in every budget.  So each field the estimate reads is checked before
anything is reserved or forwarded, and refused as the provider would refuse it: a 400
naming the field.  ``null`` stands for "not given", as in OpenAI's API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from waystone_cli.core.errors import InvalidRequest

CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# No model writes more than this, and what providers' schemas declare (a 32-bit integer).
MAX_CAP = 2**31 - 1
# OpenAI's bound on the number of choices (``n``).
MAX_CHOICES = 128
CHOICE_ROUTES = ("chat/completions", "completions")


def check_estimate_fields(route: str, body: Mapping[str, Any]) -> None:
    """Raise InvalidRequest for a field the reservation estimate cannot take as given."""
    for key in CAP_KEYS:
        _check_count(body, key, MAX_CAP)
    if route in CHOICE_ROUTES:
        _check_count(body, "n", MAX_CHOICES)
    if route == "chat/completions":
        _check_messages(body.get("messages"))


def choices(route: str, body: Mapping[str, Any]) -> int:
    """How many answers the request asks for (``n``, checked), 1 when it does not say."""
    n = body.get("n") if route in CHOICE_ROUTES else None
    return n if type(n) is int else 1


def _check_count(body: Mapping[str, Any], key: str, most: int) -> None:
    value = body.get(key)
    if value is None:
        return
    if type(value) is not int or not 1 <= value <= most:  # type(): a bool is no count
        raise InvalidRequest(
            f"{key} must be a positive integer up to {most}, or null; got {_shown(value)}",
            param=key,
        )


def _check_messages(messages: Any) -> None:
    if messages is None:
        return
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list of message objects", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be a message object", param=where)
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
            raise InvalidRequest(
                f"{where}.content must be a string, a list of content parts or null",
                param=f"{where}.content",
            )


def _shown(value: Any) -> str:
    """The offending value, shortened: a 10**400 is not echoed in full."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
