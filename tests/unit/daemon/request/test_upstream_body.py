"""The documented edits to an upstream body (``daemon.request.upstream_body``): the model,
the token cap and ``stream_options.include_usage``, and nothing else."""

from __future__ import annotations

from typing import Any

from daemon.request.upstream_body import cap_edits, drops_usage_chunk, upstream_body

CHAT = "chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def edit(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"model": "gpt-4o", "route": CHAT, "cap": None, "stream": False}
    return upstream_body(body, **{**args, **kw})


def test_a_body_that_needs_no_edit_is_returned_itself_not_copied() -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES}
    assert edit(body) is body


def test_the_model_becomes_the_provider_name_and_the_client_body_is_not_mutated() -> None:
    body = {"model": "openai/gpt-4o", "messages": MESSAGES}
    assert edit(body) == {"model": "gpt-4o", "messages": MESSAGES}
    assert body == {"model": "openai/gpt-4o", "messages": MESSAGES}


def test_a_body_without_model_gets_one_only_when_the_attempt_names_one() -> None:
    body = {"input": "text"}
    assert edit(body, route="moderations") == {"input": "text", "model": "gpt-4o"}
    assert edit(body, route="moderations", model="") is body


def test_a_cap_lowers_every_cap_key_above_it_and_keeps_the_lower_ones() -> None:
    body = {"model": "gpt-4o", "max_tokens": 500, "max_completion_tokens": 50}
    assert edit(body, cap=100) == {
        "model": "gpt-4o",
        "max_tokens": 100,
        "max_completion_tokens": 50,
    }


def test_a_cap_sets_the_route_default_key_when_the_body_sets_none() -> None:
    assert edit({"model": "gpt-4o"}, cap=100) == {"model": "gpt-4o", "max_tokens": 100}
    assert edit({"model": "gpt-4o"}, route="responses", cap=100) == {
        "model": "gpt-4o",
        "max_output_tokens": 100,
    }


def test_a_cap_replaces_a_cap_key_that_is_no_number() -> None:
    assert cap_edits({"max_tokens": "many"}, CHAT, 100) == {"max_tokens": 100}


def test_a_streamed_chat_asks_for_usage_keeping_the_client_stream_options() -> None:
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"x": 1}}
    assert edit(body, stream=True) == {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"x": 1, "include_usage": True},
    }


def test_a_streamed_responses_call_is_not_asked_for_usage() -> None:
    body = {"model": "gpt-4o", "stream": True}
    assert edit(body, route="responses", stream=True) is body


def test_the_usage_chunk_is_dropped_only_when_waystone_asked_and_the_client_did_not() -> None:
    assert drops_usage_chunk({"stream": True}, CHAT, True)
    assert not drops_usage_chunk({"stream_options": {"include_usage": True}}, CHAT, True)
    assert not drops_usage_chunk({}, CHAT, False)
    assert not drops_usage_chunk({}, "responses", True)
