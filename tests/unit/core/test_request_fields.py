"""The fields a reservation estimate reads are refused unless the estimate can take them."""

from __future__ import annotations

from typing import Any

import pytest

from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.request_fields import MAX_CAP, check_estimate_fields, choices

CHAT = "chat/completions"


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens", "max_output_tokens"])
@pytest.mark.parametrize(
    "value",
    [-1_000_000_000, -1, 0, True, False, 5.0, 1e9, "100", [5], {"v": 5}, 10**400, MAX_CAP + 1],
    ids=lambda value: repr(value)[:12],
)
def test_a_cap_that_is_not_a_positive_integer_in_range_is_refused_naming_it(
    key: str, value: Any
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_estimate_fields(CHAT, {key: value})
    assert caught.value.param == key
    assert caught.value.status == 400
    assert caught.value.message.startswith(f"{key} must be a positive integer up to {MAX_CAP}")
    assert len(caught.value.message) < 130  # a 10**400 is not echoed whole


@pytest.mark.parametrize("value", [None, 1, 5, MAX_CAP])
def test_a_positive_cap_in_range_or_null_passes(value: Any) -> None:
    check_estimate_fields(CHAT, {"max_tokens": value, "max_output_tokens": value})


@pytest.mark.parametrize("route", [CHAT, "completions"])
@pytest.mark.parametrize("value", [0, -3, 129, 10**18, True, 2.0, "2"])
def test_a_choice_count_out_of_range_is_refused(route: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_estimate_fields(route, {"n": value})
    assert caught.value.param == "n"


def test_choices_counts_n_on_the_routes_that_have_it() -> None:
    assert choices(CHAT, {"n": 4}) == 4
    assert choices("completions", {"n": 128}) == 128
    assert choices(CHAT, {}) == 1
    assert choices(CHAT, {"n": None}) == 1
    assert choices("embeddings", {"n": 4}) == 1  # not a field of that route


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ("hi", "messages"),
        ({"role": "user"}, "messages"),
        ([{"role": "user", "content": "hi"}, "hi"], "messages[1]"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        ([{"role": "user", "content": {"text": "hi"}}], "messages[0].content"),
        ([{"role": "user", "content": ["hi"]}], "messages[0].content"),
    ],
)
def test_message_contents_the_estimate_cannot_read_are_refused(messages: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_estimate_fields(CHAT, {"messages": messages})
    assert caught.value.param == param


def test_message_contents_of_every_documented_shape_pass() -> None:
    check_estimate_fields(
        CHAT,
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "assistant"},
            ]
        },
    )
