"""The mock provider's answers to the routes that generate no reply text.

Embeddings are unit vectors of ``dimensions`` (default 8) floats derived from the
SHA-256 of each input, base64-encoded (little-endian float32) when ``encoding_format``
is "base64", as the openai SDK asks by default.  Moderations flag an input when it
contains the word "forbidden" (any case), under the category "illicit".  Transcriptions
take the form fields (``file`` as bytes) and bill ``max(1, len(file) // 1000)`` audio
input tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from typing import Any

from waystone_cli.core.usage import estimate_input_tokens, estimate_tokens

EMBEDDING_DIMENSIONS = 8
MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip
_FORBIDDEN = re.compile(r"\bforbidden\b", re.IGNORECASE)

Json = dict[str, Any]


def request_id(prefix: str, body: Mapping[str, Any], model: str) -> str:
    """A stable id: the same request always gets the same one."""
    digest = hashlib.sha256(
        json.dumps([model, body], sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"{prefix}mock{digest[:20]}"


def _inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [json.dumps(value)]


def _vector(text: str, dimensions: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % 32] + i) % 256 / 127.5 - 1.0 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def embeddings(body: Mapping[str, Any], model: str) -> Json:
    dims = body.get("dimensions")
    dimensions = dims if isinstance(dims, int) and 0 < dims <= 4096 else EMBEDDING_DIMENSIONS
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(_inputs(body.get("input"))):
        vector = _vector(text, dimensions)
        packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append(
            {"object": "embedding", "index": index, "embedding": packed if as_base64 else vector}
        )
    tokens = estimate_input_tokens("embeddings", body)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def moderations(body: Mapping[str, Any], model: str) -> Json:
    results = []
    for text in _inputs(body.get("input")):
        flagged = bool(_FORBIDDEN.search(text))
        results.append(
            {
                "flagged": flagged,
                "categories": {c: flagged and c == "illicit" for c in MODERATION_CATEGORIES},
                "category_scores": {
                    c: 0.99 if flagged and c == "illicit" else 0.0001 for c in MODERATION_CATEGORIES
                },
            }
        )
    return {"id": request_id("modr-", body, model), "model": model, "results": results}


def transcription(body: Mapping[str, Any], model: str) -> Json:
    audio = body.get("file")
    size = len(audio) if isinstance(audio, bytes | str) else 0
    text = f"This is a mock transcription of {size} bytes of audio."
    audio_tokens = max(1, size // 1000)
    output_tokens = estimate_tokens(text)
    return {
        "text": text,
        "usage": {
            "type": "tokens",
            "input_tokens": audio_tokens,
            "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
            "output_tokens": output_tokens,
            "total_tokens": audio_tokens + output_tokens,
        },
    }


def model_list(body: Mapping[str, Any], model: str) -> Json:
    data = [{"id": model, "object": "model", "created": 0, "owned_by": "mock"}] if model else []
    return {"object": "list", "data": data}
