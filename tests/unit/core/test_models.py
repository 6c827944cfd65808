from __future__ import annotations

import pytest

from waystone_cli.core.config import Config, parse_config, parse_toml
from waystone_cli.core.errors import ConfigError, InvalidRequest, ModelNotFound
from waystone_cli.core.models import ModelIndex, list_models, resolve_model, route_api, speaks

CONFIG = parse_config(
    {
        "providers": {
            "openai": {"base_url": "https://api.openai.com/v1", "models": ["gpt-4o", "o3"]},
            "azure-eu": {"base_url": "https://eu.example.com/v1", "models": ["gpt-4o"]},
            "local": {"kind": "mock", "models": ["mock-small", "meta-llama/llama-3"]},
        }
    }
)


@pytest.mark.parametrize(
    ("name", "provider", "model"),
    [
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("azure-eu/gpt-4o", "azure-eu", "gpt-4o"),
        ("o3", "openai", "o3"),
        ("mock-small", "local", "mock-small"),
        ("meta-llama/llama-3", "local", "meta-llama/llama-3"),
        ("local/meta-llama/llama-3", "local", "meta-llama/llama-3"),
    ],
)
def test_resolves_qualified_and_unambiguous_bare_names(
    name: str, provider: str, model: str
) -> None:
    resolved, upstream_model = resolve_model(CONFIG, name)
    assert (resolved.name, upstream_model) == (provider, model)


def test_an_ambiguous_bare_name_is_a_400_listing_the_qualified_names() -> None:
    with pytest.raises(InvalidRequest) as err:
        resolve_model(CONFIG, "gpt-4o")
    assert err.value.status == 400
    assert str(err.value) == (
        'model "gpt-4o" is served by several providers; name one of: openai/gpt-4o, azure-eu/gpt-4o'
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpt-5", 'model "gpt-5" is not served by any provider'),
        ("nobody/gpt-4o", 'model "nobody/gpt-4o" is not served by any provider'),
        (
            "openai/gpt-5",
            'model "gpt-5" is not served by provider "openai" (its models: gpt-4o, o3)',
        ),
        ("openai/", 'model "" is not served by provider "openai" (its models: gpt-4o, o3)'),
    ],
)
def test_an_unknown_name_is_a_404(name: str, message: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        resolve_model(CONFIG, name)
    assert (err.value.status, str(err.value)) == (404, message)


def test_an_empty_name_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match=r"^model: must not be empty$"):
        resolve_model(CONFIG, "")


def test_a_provider_with_no_model_list_serves_any_model() -> None:
    config = parse_config(
        {
            "providers": {
                "proxy": {"base_url": "http://127.0.0.1:9/v1"},
                "local": {"kind": "mock", "models": ["mock-small"]},
            }
        }
    )
    index = ModelIndex.from_config(config)
    assert [
        (p.name, m) for p, m in map(index.resolve, ["proxy/anything", "gpt-4o", "mock-small"])
    ] == [
        ("proxy", "anything"),
        ("proxy", "gpt-4o"),
        ("local", "mock-small"),
    ]


def test_two_catch_all_providers_make_an_unlisted_bare_name_ambiguous() -> None:
    config = parse_config(
        {
            "providers": {
                "a": {"base_url": "http://127.0.0.1:9/v1"},
                "b": {"base_url": "http://127.0.0.1:8/v1"},
            }
        }
    )
    with pytest.raises(InvalidRequest, match=r"name one of: a/gpt-4o, b/gpt-4o$"):
        resolve_model(config, "gpt-4o")


def test_list_models_qualifies_every_listed_model() -> None:
    assert list_models(CONFIG) == {
        "object": "list",
        "data": [
            {"id": "openai/gpt-4o", "object": "model", "created": 0, "owned_by": "openai"},
            {"id": "openai/o3", "object": "model", "created": 0, "owned_by": "openai"},
            {"id": "azure-eu/gpt-4o", "object": "model", "created": 0, "owned_by": "azure-eu"},
            {"id": "local/mock-small", "object": "model", "created": 0, "owned_by": "local"},
            {
                "id": "local/meta-llama/llama-3",
                "object": "model",
                "created": 0,
                "owned_by": "local",
            },
        ],
    }
    assert list_models(Config()) == {"object": "list", "data": []}


# --- API families: a rule moves requests only between providers that answer them ------

FAMILIES = """
[providers.oai]
base_url = "https://api.openai.com/v1"
models = ["gpt-4o"]
[providers.anth]
kind = "anthropic"
base_url = "https://api.anthropic.com"
models = ["claude-sonnet-4-5", "claude-haiku-4-5"]
[providers.local]
kind = "mock"
models = ["mock-small"]
"""


def _families(rule: str) -> Config:
    return parse_config(parse_toml(FAMILIES + rule))


@pytest.mark.parametrize("action", ["change_model", "fallback"])
def test_a_rule_moving_anthropic_requests_to_an_openai_provider_is_a_config_error(
    action: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        _families(f'[rules.cheaper]\nmodel = "claude-*"\naction = "{action}"\nto = "oai/gpt-4o"\n')
    assert str(caught.value) == (
        'rules.cheaper.to: moves anthropic requests for models of provider "anth" (kind'
        ' "anthropic") to "oai/gpt-4o", of provider "oai" (kind "openai"), which does not'
        " answer them"
    )


def test_a_rule_moving_openai_requests_to_an_anthropic_provider_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^rules\.up\.to: moves openai requests"):
        _families(
            '[rules.up]\nmodel = "gpt-4o"\naction = "change_model"\nto = "claude-haiku-4-5"\n'
        )


@pytest.mark.parametrize(
    "rule",
    [
        '[rules.r]\nmodel = "claude-sonnet-*"\naction = "change_model"\nto = "claude-haiku-4-5"\n',
        # The mock answers both APIs, and a rule without a model trigger names no family:
        '[rules.r]\nmodel = "mock-small"\naction = "change_model"\nto = "oai/gpt-4o"\n',
        '[rules.r]\naction = "fallback"\nto = "oai/gpt-4o"\n',
    ],
)
def test_rules_within_a_family_or_naming_none_load(rule: str) -> None:
    assert list(_families(rule).rules) == ["r"]


def test_each_kind_speaks_its_api_and_the_mock_both() -> None:
    config = _families("")
    assert [
        (name, speaks(p, "openai"), speaks(p, "anthropic")) for name, p in config.providers.items()
    ] == [("oai", True, False), ("anth", False, True), ("local", True, True)]
    assert [route_api(r) for r in ("messages", "messages/count_tokens", "chat/completions")] == [
        "anthropic",
        "anthropic",
        "openai",
    ]


def test_a_bare_name_goes_to_the_providers_that_speak_the_requests_api() -> None:
    index = ModelIndex.from_config(
        parse_config(
            parse_toml("""
[providers.oai]
base_url = "https://api.openai.com/v1"
models = []
[providers.anth]
kind = "anthropic"
base_url = "https://api.anthropic.com"
models = []
[providers.both]
base_url = "https://proxy.example/v1"
models = ["shared"]
[providers.claude-too]
kind = "anthropic"
base_url = "https://eu.anthropic.example"
models = ["shared"]
""")
        )
    )
    assert index.resolve("claude-x", "anthropic")[0].name == "anth"
    assert index.resolve("gpt-x", "openai")[0].name == "oai"
    assert index.resolve("shared", "anthropic")[0].name == "claude-too"
    assert index.resolve("shared", "openai")[0].name == "both"
    with pytest.raises(InvalidRequest, match="served by several providers"):
        index.resolve("claude-x")  # no API named: the two catch-alls are ambiguous
