"""The request path's JSON helpers keep a client's body exact."""

from __future__ import annotations

import json
import random
import re

import pytest

from daemon.providers.jsonio import decode_reply, encode
from waystone_cli.core import jsontext


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


# --- jsontext.loads: a client's body, fast and exact ---------------------------------

_SAME_AS_JSON_LOADS = [
    b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9llo \\ud83d\\ude00"}]}',
    b'{"seed": 123456789012345678901234567890, "n": -9223372036854775809}',
    b'{"big": 18446744073709551615, "small": -9223372036854775808}',
    b'{"t": 0.1, "p": 1e-7, "x": 1.7976931348623157e308, "tiny": 1e-400}',
    b'{"nan": NaN, "inf": Infinity, "ninf": -Infinity}',
    b'{"inf": 1e400}',
    b'{"lone": "\\ud800"}',
    b'\xef\xbb\xbf{"bom": 1}',
    b'{"a": 1, "a": 2}',
    '{"text": "caf\u00e9"}'.encode("utf-16"),
    b'"just a string"',
    b"[1, 2.5, true, false, null]",
]


@pytest.mark.parametrize("data", _SAME_AS_JSON_LOADS)
def test_loads_gives_what_json_loads_gives(data: bytes) -> None:
    expected = json.loads(data)
    got = jsontext.loads(data)
    assert repr(got) == repr(expected)  # repr: nan != nan, and 1 == 1.0 == True
    if isinstance(data, bytes) and not data.startswith((b"\xef", b"\xff")):
        assert repr(jsontext.loads(data.decode())) == repr(expected)


def test_loads_keeps_integers_beyond_64_bits_exact() -> None:
    assert jsontext.loads(b'{"seed": 123456789012345678901234567890}') == {
        "seed": 123456789012345678901234567890
    }
    assert type(jsontext.loads("[-92233720368547758090]")[0]) is int


@pytest.mark.parametrize(
    "data", [b"{", b"[1,]", b'{"a": 01}', b"\xff\xfe\x00", b"", b"[1] x", b'{"a": "x\ny"}']
)
def test_loads_raises_what_json_loads_raises(data: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)) as expected:
        json.loads(data)
    with pytest.raises(type(expected.value)) as got:
        jsontext.loads(data)
    assert str(got.value) == str(expected.value)


def test_the_digit_run_check_is_the_regex_search_it_replaces() -> None:
    rng = random.Random(7)
    alphabet = "0123456789" * 6 + 'x ."-e\u00e9\ud800\U0001f600\u0663'  # \u0663: an Arabic 3
    pattern = re.compile(rf"[0-9]{{{jsontext.LONG_RUN}}}")
    found = 0
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
        expected = pattern.search(text) is not None
        found += expected
        assert jsontext.has_long_digit_run(text) is expected, text
        if "\ud800" not in text:
            assert jsontext.has_long_digit_run(text.encode()) is expected, text
    assert 300 < found < 2700  # both answers came up often


def test_loads_passes_its_keyword_arguments_to_json_loads() -> None:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    assert jsontext.loads('{"a": 1}', parse_constant=refuse) == {"a": 1}
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        jsontext.loads('{"a": NaN}', parse_constant=refuse)


# --- jsontext.loads_client: refuse what could not be passed on -------------------------


def _nest(depth: int, leaf: str = "1") -> str:
    return '{"a": ' * depth + leaf + "}" * depth


@pytest.mark.parametrize("data", [b'{"a": 1}', _nest(jsontext.MAX_DEPTH).encode(), b"[]", b"7"])
def test_loads_client_keeps_what_json_loads_gives_within_the_depth(data: bytes) -> None:
    assert jsontext.loads_client(data) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        _nest(jsontext.MAX_DEPTH + 1),  # orjson parses it: refused after
        "[" * (jsontext.MAX_DEPTH + 1) + "]" * (jsontext.MAX_DEPTH + 1),
        _nest(jsontext.MAX_DEPTH + 1, "12345678901234567890123"),  # the standard library's
        "[" * 100_000 + "]" * 100_000,  # deeper than either parser recurses
    ],
)
def test_loads_client_refuses_nesting_past_the_depth(data: str) -> None:
    with pytest.raises(
        jsontext.ClientJSONError, match=f"nested deeper than {jsontext.MAX_DEPTH} levels"
    ):
        jsontext.loads_client(data.encode())


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = "[" + ",".join(["[]"] * 1000) + ', "[[[[{{{{"]'
    assert len(jsontext.loads_client(wide)) == 1001


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_loads_client_refuses_nan_and_infinity(constant: str) -> None:
    with pytest.raises(jsontext.ClientJSONError, match=f"^{constant} is not valid JSON$"):
        jsontext.loads_client(f'{{"t": {constant}}}'.encode())


@pytest.mark.parametrize(
    "data",
    [b'{"a": "\\ud800"}', b'{"\\uDFFF": 1}', b'["x\\udbff y", 123456789012345678901234]'],
)
def test_loads_client_refuses_lone_surrogates(data: bytes) -> None:
    with pytest.raises(jsontext.ClientJSONError, match="lone surrogate"):
        jsontext.loads_client(data)


def test_loads_client_keeps_surrogate_pairs_and_big_integers() -> None:
    data = b'{"e": "\\ud83d\\ude00", "n": 123456789012345678901234567890}'
    assert jsontext.loads_client(data) == {"e": "\U0001f600", "n": 123456789012345678901234567890}


@pytest.mark.parametrize("data", [b"{nope", b"\xff\xfe{}", b"", b"1" * 5000])
def test_loads_client_refuses_what_is_not_json_as_one_error(data: bytes) -> None:
    with pytest.raises(jsontext.ClientJSONError):
        jsontext.loads_client(data)
