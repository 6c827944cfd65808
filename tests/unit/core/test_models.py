from __future__ import annotations

import pytest

from waystone_cli.core.config import Config, parse_config
from waystone_cli.core.errors import InvalidRequest, ModelNotFound
from waystone_cli.core.models import ModelIndex, list_models, resolve_model

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
