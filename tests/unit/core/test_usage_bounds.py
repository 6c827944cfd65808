"""Usage settled against what the request could have used (``core.usage_bounds``)."""

from __future__ import annotations

from typing import Any

import pytest

from waystone_cli.core.usage import Usage, usage_from_mapping
from waystone_cli.core.usage_bounds import (
    INPUT_SLACK,
    MEDIA_TOKENS,
    TOKEN_CEILING,
    SettledUsage,
    input_bound,
    output_bound,
    settle_usage,
)

HI = {"messages": [{"role": "user", "content": "hi"}]}  # 3 + 3 + 1 = 7 tokens estimated


def test_input_bound_is_a_multiple_of_the_estimate_plus_slack_and_media() -> None:
    assert input_bound("chat/completions", HI) == 4 * 7 + INPUT_SLACK
    image = {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    # 3 + 3 + 1 + 85 for the image
    assert input_bound("chat/completions", body) == 4 * 92 + INPUT_SLACK + MEDIA_TOKENS


def test_a_responses_request_on_a_stored_conversation_is_bounded_by_the_ceiling() -> None:
    body = {"input": "and then?", "previous_response_id": "resp_1"}
    assert input_bound("responses", body) == TOKEN_CEILING


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        ({}, TOKEN_CEILING),
        ({"max_tokens": 50}, 50),
        ({"max_tokens": 50, "max_completion_tokens": 20, "n": 3}, 60),
        ({"max_tokens": 10, "n": 2, "best_of": 5}, 50),
        ({"max_tokens": True, "n": "2"}, TOKEN_CEILING),
        ({"max_output_tokens": -5}, TOKEN_CEILING),
    ],
)
def test_output_bound_is_the_smallest_cap_times_the_choices(
    body: dict[str, Any], bound: int
) -> None:
    assert output_bound(body) == bound


def test_plausible_usage_is_taken_as_given() -> None:
    usage = Usage(input_tokens=40_000, output_tokens=30, cached_tokens=20, reasoning_tokens=10)
    body = {**HI, "messages": [{"role": "user", "content": "x" * 40_000}]}
    assert settle_usage(usage, route="chat/completions", body=body, output_estimate=0) == (
        SettledUsage(usage=usage, estimated=False, note=None)
    )


def test_details_above_their_totals_are_capped_and_flagged() -> None:
    usage = Usage(input_tokens=10, output_tokens=5, cached_tokens=12, reasoning_tokens=9)
    assert settle_usage(usage, route="chat/completions", body=HI, output_estimate=0) == (
        SettledUsage(
            usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=10, reasoning_tokens=5),
            estimated=True,
            note="provider usage implausible (token details above their totals): "
            "capped to what the request could use",
        )
    )


def test_no_usage_is_the_estimate_capped_by_the_request() -> None:
    body = {**HI, "max_tokens": 4}
    assert settle_usage(None, route="chat/completions", body=body, output_estimate=9) == (
        SettledUsage(usage=Usage(input_tokens=7, output_tokens=4), estimated=True, note=None)
    )


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1, "completion_tokens": 2},
        {"prompt_tokens": 1, "completion_tokens": 2.0},
        {"input_tokens": False, "output_tokens": 2},
        {"prompt_tokens": "1", "completion_tokens": 2},
    ],
)
def test_junk_counts_are_no_usage(usage: dict[str, Any]) -> None:
    assert usage_from_mapping(usage) is None


def test_null_counts_and_junk_details_count_zero() -> None:
    usage = {
        "prompt_tokens": 8,
        "completion_tokens": None,
        "prompt_tokens_details": {"cached_tokens": "x"},
    }
    assert usage_from_mapping(usage) == Usage(input_tokens=8)
