"""The request path's JSON helpers keep a client's body exact."""

from __future__ import annotations

import json

from daemon.jsonio import decode_reply, encode


def test_encode_round_trips_what_json_loads_gave() -> None:
    body = json.loads('{"model": "m", "seed": 12, "t": 0.5, "messages": [{"content": "héllo ✓"}]}')
    assert json.loads(encode(body)) == body
    assert "héllo ✓".encode() in encode(body)  # UTF-8, not \\u escapes


def test_encode_keeps_integers_beyond_64_bits() -> None:
    body = json.loads('{"seed": 123456789012345678901234567890}')
    assert json.loads(encode(body)) == {"seed": 123456789012345678901234567890}


def test_decode_reply_is_none_for_what_is_not_json() -> None:
    assert decode_reply(b'{"usage": {"prompt_tokens": 3}}') == {"usage": {"prompt_tokens": 3}}
    assert decode_reply(b"<html>bad gateway</html>") is None
    assert decode_reply(b"\xff\xfe") is None
    assert decode_reply("") is None
