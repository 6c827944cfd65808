"""Decoding JSON a client sent: as fast as orjson, as exact as the standard library.

orjson parses a typical request body several times faster than ``json.loads``, but it
differs from it in three ways a client's body may hit:

- an integer beyond 64 bits becomes a float (``json.loads`` keeps it exact);
- ``NaN``, ``Infinity`` and ``-Infinity``, and lone surrogates, are refused
  (``json.loads`` accepts them);
- its error messages are worded differently.

So ``loads`` hands the text to the standard library whenever orjson could differ: when
the text holds a run of 19 or more digits (every integer beyond 64 bits has one), and
when orjson refuses it.  The result is always what ``json.loads(data, **kwargs)``
returns, and every error is the one it raises.

``loads_client`` is the one decoder for text a client sent (request bodies, the identity
in ``metadata.waystone``): ``loads`` that also refuses what is not JSON or could not be
passed on unchanged, as one ``ClientJSONError``, so no such input reaches the code after
it (estimates, the upstream encoder) to fail there.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# 2**63 has 19 digits: a shorter run of digits is an integer orjson keeps exact.  A run
# is found by mapping every digit byte to 1 and any other byte to 0, then looking for
# 19 ones: two C passes, much cheaper than ``re.search(r"\d{19}")`` on a long body.
# Digits are ASCII, so a str is
# checked as its UTF-8 bytes (``surrogatepass`` keeps lone surrogates encodable).
LONG_RUN = 19
_DIGIT_MARKS = bytes(1 if 0x30 <= b <= 0x39 else 0 for b in range(256))
_LONG_MARKS = b"\x01" * LONG_RUN


def has_long_digit_run(data: bytes | str) -> bool:
    """Whether ``data`` holds ``LONG_RUN`` or more ASCII digits in a row."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return raw.translate(_DIGIT_MARKS).find(_LONG_MARKS) >= 0


def loads(data: bytes | str, **kwargs: Any) -> Any:
    """``json.loads(data, **kwargs)``, through orjson when that gives the same value.

    ``kwargs`` go to ``json.loads`` only; pass ones that change nothing for text orjson
    accepts (``parse_constant`` to refuse ``NaN``, say), never hooks that build the values.
    """
    return _parse(data, **kwargs)[0]


def _parse(data: bytes | str, **kwargs: Any) -> tuple[Any, bool]:
    """``loads``, and whether orjson parsed it."""
    if not has_long_digit_run(data):
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(data, **kwargs), False


# orjson, which encodes a body upstream, refuses to nest deeper; no real request comes
# close (a tool's JSON schema nests a few levels).
MAX_DEPTH = 254


class ClientJSONError(ValueError):
    """A client's JSON text that is refused: not JSON, or JSON no provider could take."""


def loads_client(data: bytes | str) -> Any:
    """``loads`` for text a client sent, refusing what could not be passed on unchanged.

    Refused with ``ClientJSONError``: what is not JSON (``NaN``, ``Infinity`` and
    ``-Infinity`` included), nesting deeper than ``MAX_DEPTH``, and strings holding a lone
    surrogate (not Unicode, so not encodable as UTF-8).
    """
    try:
        value, by_orjson = _parse(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise ClientJSONError(_TOO_DEEP) from None
    except UnicodeError as err:
        raise ClientJSONError(f"not UTF-8: {err}") from None
    except ValueError as err:
        raise ClientJSONError(str(err)) from None
    # What orjson parsed holds no lone surrogate (it refuses them), and nests past
    # MAX_DEPTH only if the text is longer than that many pairs of brackets.
    if not by_orjson or len(data) > 2 * MAX_DEPTH:
        _check_passable(value)
    return value


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_passable(value: Any) -> None:
    try:
        orjson.dumps(value)
        return  # the common case, decided in C
    except orjson.JSONEncodeError:
        pass  # too deep, a lone surrogate, or only an integer beyond 64 bits: which?
    if _deeper_than(value, MAX_DEPTH):
        raise ClientJSONError(_TOO_DEEP)
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ClientJSONError(
            "a lone surrogate (\\ud800 to \\udfff unpaired) is not Unicode"
        ) from None


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels (level by level, so
    without recursion)."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True
