"""What a request could have used, and usage settled against it.

A provider's usage is taken as given only when it is plausible for the request that was
sent.  The rule (see docs/design.md):

- input tokens at most ``INPUT_MULTIPLE`` times the estimate of the input
  (``usage.estimate_input_tokens``) plus ``INPUT_SLACK``, plus ``MEDIA_TOKENS`` for each
  image, audio or file part, whose tokens the estimate cannot see; a Responses request
  that continues a stored conversation (``previous_response_id``, ``conversation``)
  brings input the body does not hold, and is bounded by ``TOKEN_CEILING`` alone;
- output tokens at most the request's cap (``max_tokens``, ``max_completion_tokens``,
  ``max_output_tokens``: the smallest) times its choices (``n``, ``best_of``), or
  ``TOKEN_CEILING`` when it sets no cap;
- cached, cache-write and audio tokens at most the input, reasoning tokens at most the
  output.

A count past its bound is capped to it and the result is marked estimated, with a note
saying which count was implausible.  Usage that is missing (or junk, which
``usage.usage_from_mapping`` reads as missing) is replaced by the estimate, capped the
same way, and marked estimated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from waystone_cli.core.usage import Usage, estimate_input_tokens

INPUT_MULTIPLE = 4
INPUT_SLACK = 32_768
MEDIA_TOKENS = 100_000  # a high-detail image on the models that count most for one
TOKEN_CEILING = 1_000_000  # beyond any model's output, and any single request's input
_CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_CHOICE_KEYS = ("n", "best_of")
_MEDIA_TYPES = frozenset(
    {"image_url", "input_image", "image", "input_audio", "audio", "file", "input_file", "document"}
)
_STORED_CONTEXT_KEYS = ("previous_response_id", "conversation")


# Routes whose answers are charged by tokens: an answer without usage is estimated.
TOKEN_ROUTES = frozenset({"chat/completions", "completions", "responses", "embeddings", "messages"})


class SettledUsage(NamedTuple):
    usage: Usage
    estimated: bool
    note: str | None  # why reported counts were not taken as given


def input_bound(route: str, body: Mapping[str, Any]) -> int:
    """The most input a request could plausibly use, by the rule in the module docstring."""
    if route == "responses" and any(body.get(k) for k in _STORED_CONTEXT_KEYS):
        return TOKEN_CEILING
    estimate = estimate_input_tokens(route, body)
    return INPUT_MULTIPLE * estimate + INPUT_SLACK + MEDIA_TOKENS * _media_parts(body)


def output_bound(body: Mapping[str, Any]) -> int:
    caps = _counts(body, _CAP_KEYS)
    return min(caps) * max(_counts(body, _CHOICE_KEYS) or [1]) if caps else TOKEN_CEILING


def settle_usage(
    reported: Usage | None, *, route: str, body: Mapping[str, Any], output_estimate: int
) -> SettledUsage:
    """The usage to record and charge for a request with ``body``: ``reported`` if it is
    plausible, else capped; the estimate (capped too) if nothing was reported."""
    if reported is None:
        estimate = Usage(
            input_tokens=estimate_input_tokens(route, body), output_tokens=output_estimate
        )
        return SettledUsage(usage=_capped(estimate, route, body)[0], estimated=True, note=None)
    capped, over = _capped(reported, route, body)
    if capped == reported:
        return SettledUsage(usage=reported, estimated=False, note=None)
    details = ", ".join(over) or "token details above their totals"
    note = f"provider usage implausible ({details}): capped to what the request could use"
    return SettledUsage(usage=capped, estimated=True, note=note)


def _capped(usage: Usage, route: str, body: Mapping[str, Any]) -> tuple[Usage, list[str]]:
    over = []
    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
    # Every input bound is at least the slack: most requests need no estimate here.
    if input_tokens > INPUT_SLACK and input_tokens > (bound := input_bound(route, body)):
        over.append(f"input_tokens {input_tokens} > {bound}")
        input_tokens = bound
    if output_tokens > (bound := output_bound(body)):
        over.append(f"output_tokens {output_tokens} > {bound}")
        output_tokens = bound
    writes = min(usage.cache_write_tokens, input_tokens)
    capped = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=min(usage.cached_tokens, input_tokens),
        cache_write_tokens=writes,
        reasoning_tokens=min(usage.reasoning_tokens, output_tokens),
        audio_tokens=min(usage.audio_tokens, input_tokens),
        cache_write_1h_tokens=min(usage.cache_write_1h_tokens, writes),
    )
    return capped, over


def _counts(body: Mapping[str, Any], keys: tuple[str, ...]) -> list[int]:
    """The positive integers (not bools) under ``keys``."""
    values = (body.get(key) for key in keys)
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0]


def _media_parts(body: Mapping[str, Any]) -> int:
    """Image, audio and file parts anywhere in the messages or input (one level of parts)."""
    items = body.get("messages", body.get("input"))
    count = 0
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        if item.get("type") in _MEDIA_TYPES:
            count += 1
        content = item.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, Mapping) and part.get("type") in _MEDIA_TYPES:
                count += 1
    return count
