"""What does refusing unpassable client JSON cost? ``jsontext.loads_client`` against
``jsontext.loads`` on a small chat body and on a 25 KB one (200 messages with content
parts, 20 tools) whose brackets outnumber ``MAX_DEPTH``, so its checks run.

    python bench/client_json.py
"""

from __future__ import annotations

import json
import timeit

from waystone_cli.core import jsontext

SMALL = {
    "model": "gpt-test",
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "x" * 400},
    ],
    "metadata": {"waystone": json.dumps({"user": "u1"})},
}
TOOL = {"type": "object", "properties": {"a": {"type": "string"}}}
LARGE = {
    "model": "gpt-test",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "y" * 50}]} for _ in range(200)
    ],
    "tools": [
        {"type": "function", "function": {"name": f"f{i}", "parameters": TOOL}} for i in range(20)
    ],
}


def best_us(fn: object, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    for name, body, number in (("small", SMALL, 20_000), ("large", LARGE, 2_000)):
        raw = json.dumps(body).encode()
        plain = best_us(lambda raw=raw: jsontext.loads(raw), number)
        client = best_us(lambda raw=raw: jsontext.loads_client(raw), number)
        print(
            f"{name}: {len(raw)} bytes, loads {plain:.1f} us, loads_client {client:.1f} us, "
            f"ratio {client / plain:.2f}"
        )


if __name__ == "__main__":
    main()
