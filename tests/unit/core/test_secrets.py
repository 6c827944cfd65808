"""The secrets a config knows, their redaction, and URLs without credentials."""

from __future__ import annotations

from waystone_cli.core.config import parse_config, parse_toml
from waystone_cli.core.secrets import Redactor, config_secrets, strip_credentials

CONFIG = """
[providers.a]
base_url = "https://svc:p%40ss-word-1@llm.example/v1"
api_key = "env:A_KEY"
models = ["m"]
headers = { "api-key" = "azure-header-key-1", "x-short" = "v1" }

[providers.b]
base_url = "https://token-as-username@llm.example/v1"
api_key = "literal-key-b-123"
models = ["n"]

[keys.ci]
hash = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[otel]
endpoint = "http://collector:4318"
headers = { authorization = "Bearer otel-token-123" }
"""


def test_the_config_knows_every_secret_it_holds_or_points_at() -> None:
    config = parse_config(parse_toml(CONFIG))
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    redactor = Redactor.of(config_secrets(config, {"A_KEY": "sk-from-the-environment"}))
    assert set(redactor.secrets) == {
        "sk-from-the-environment",
        "azure-header-key-1",
        "svc:p%40ss-word-1",
        "svc:p@ss-word-1",
        "p%40ss-word-1",
        "p@ss-word-1",
        "literal-key-b-123",
        "token-as-username",
        f"sha256:{digest}",
        digest,
        "Bearer otel-token-123",
    }  # "v1" is too short to be a secret: redacting it would garble every answer


def test_a_secret_is_replaced_whole_even_when_it_contains_another() -> None:
    redactor = Redactor.of(["sk-abcdefgh", "sk-abcdefgh-long-form", "short"])
    text = "Authorization: Bearer sk-abcdefgh-long-form, again sk-abcdefgh; short"
    expected = "Authorization: Bearer [redacted], again [redacted]; short"
    assert redactor.text(text) == expected
    assert redactor.data(text.encode()) == expected.encode()
    assert Redactor().text(text) == text


def test_credentials_are_stripped_from_a_url() -> None:
    assert strip_credentials("https://u:p@host:8443/v1/chat") == "https://host:8443/v1/chat"
    assert strip_credentials("https://token@host/v1") == "https://host/v1"
    assert strip_credentials("http://127.0.0.1:1234/v1?q=a@b") == "http://127.0.0.1:1234/v1?q=a@b"
