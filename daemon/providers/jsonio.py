"""Fast JSON for the request path, with orjson where it changes nothing.

- ``encode`` serializes a body upstream with orjson (compact UTF-8; several times faster
  than ``json.dumps``), falling back to the standard library for what orjson refuses
  (integers beyond 64 bits, which a client's body may hold: ``json.loads`` keeps them).
- ``decode_reply`` parses a provider's answer, which is only *read* (for usage and
  output checks) and relayed byte for byte, so orjson's one lossy case (an integer beyond
  64 bits becomes a float) cannot change what the client gets.

A client's request body is parsed by ``waystone_cli.core.jsontext.loads_client``: orjson
where it gives the value ``json.loads`` would, the standard library everywhere else, and
nothing ``encode`` could fail on (no lone surrogate, no nesting past orjson's limit).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False).encode()


def decode_reply(data: bytes | str) -> Any:
    """The parsed JSON, or None when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
