"""Which provider serves a requested model name.

A name is ``provider/model`` or a bare ``model``:

- ``provider/model``: the part before the first ``/`` names a provider and the rest is
  the model as that provider knows it (it may contain ``/`` itself, as OpenRouter's
  ``meta-llama/llama-3`` does).  The model must be in the provider's ``models`` list,
  unless that list is empty, which means "any model": such a provider is a pass-through
  to whatever its upstream serves.
- A bare name is served by the providers that list it.  Exactly one: that one; several:
  an ambiguous name, a 400 listing the qualified names.  None: if exactly one provider
  has an empty list (a catch-all) it gets the name; several catch-alls make it ambiguous.
- A name whose prefix is not a provider is taken whole as a bare name, so a model
  listed as ``meta-llama/llama-3`` resolves without a provider prefix.

``ModelIndex`` is built once per config snapshot (a few dict inserts per model); the
daemon keeps one per snapshot and ``resolve_model`` builds one for a single lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from waystone_cli.core.config import Config, ProviderConfig, RuleConfig
from waystone_cli.core.decision import model_matches
from waystone_cli.core.errors import InvalidRequest, ModelNotFound
from waystone_cli.core.usage import MESSAGES_ROUTES


@dataclass(frozen=True)
class ModelIndex:
    providers: Mapping[str, ProviderConfig]
    by_model: Mapping[str, tuple[str, ...]]  # bare model name -> providers listing it
    catch_all: tuple[str, ...]  # providers with an empty models list

    @classmethod
    def from_config(cls, config: Config) -> ModelIndex:
        return cls.of(config.providers)

    @classmethod
    def of(cls, providers: Mapping[str, ProviderConfig]) -> ModelIndex:
        by_model: dict[str, list[str]] = {}
        for name, provider in providers.items():
            for model in provider.models:
                by_model.setdefault(model, []).append(name)
        return cls(
            providers=providers,
            by_model={model: tuple(names) for model, names in by_model.items()},
            catch_all=tuple(n for n, p in providers.items() if not p.models),
        )

    def resolve(self, name: str, api: str | None = None) -> tuple[ProviderConfig, str]:
        """The provider and the provider's own model name; 400 if ambiguous, 404 if unknown.

        With ``api`` (the client API the request came in), a bare name goes to the
        providers that speak it first: those listing it, then the catch-alls, and only
        then the others (the caller refuses a provider that does not speak the API)."""
        if not name:
            raise InvalidRequest("model: must not be empty", param="model")
        prefix, slash, rest = name.partition("/")
        provider = self.providers.get(prefix) if slash else None
        if provider is not None and rest and (not provider.models or rest in provider.models):
            return provider, rest
        listed = self.by_model.get(name, ())
        candidates = listed or self.catch_all
        if api is not None:
            candidates = (
                self._speaking(listed, api) or self._speaking(self.catch_all, api) or candidates
            )
        if len(candidates) == 1:
            return self.providers[candidates[0]], name
        if len(candidates) > 1:
            qualified = ", ".join(f"{p}/{name}" for p in candidates)
            raise InvalidRequest(
                f'model "{name}" is served by several providers; name one of: {qualified}',
                param="model",
            )
        if provider is not None:
            raise ModelNotFound(
                f'model "{rest}" is not served by provider "{prefix}" '
                f"(its models: {', '.join(provider.models)})",
                param="model",
            )
        raise ModelNotFound(f'model "{name}" is not served by any provider', param="model")

    def _speaking(self, names: tuple[str, ...], api: str) -> tuple[str, ...]:
        return tuple(n for n in names if speaks(self.providers[n], api))

    def listing(self, api: str = "openai") -> dict[str, Any]:
        """``GET /v1/models`` in the list shape of ``api``, every model qualified as
        ``provider/model``.

        ``"anthropic"`` (a client that sent ``anthropic-version``) is Anthropic's shape and
        lists only the models of ``anthropic`` providers: the ones its ``/v1/messages`` can
        call, since a rule or a request never crosses API families."""
        models = [
            (name, model)
            for name, provider in self.providers.items()
            if api == "openai" or provider.kind == api
            for model in provider.models
        ]
        if api == "openai":
            return {"object": "list", "data": [_openai_model(*m) for m in models]}
        data = [_anthropic_model(*m) for m in models]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def describe(self, model_id: str, api: str = "openai") -> dict[str, Any]:
        """``GET /v1/models/{model_id}``: one entry of ``listing``; 404 if it lists none."""
        for entry in self.listing(api)["data"]:
            if entry["id"] == model_id:
                return dict(entry)
        raise ModelNotFound(f"the model `{model_id}` is not listed by any provider")


def _openai_model(provider: str, model: str) -> dict[str, Any]:
    return {"id": f"{provider}/{model}", "object": "model", "created": 0, "owned_by": provider}


def _anthropic_model(provider: str, model: str) -> dict[str, Any]:
    qualified = f"{provider}/{model}"
    # The config knows no release date; the epoch says "unknown" in a valid RFC 3339 time.
    return {
        "type": "model",
        "id": qualified,
        "display_name": qualified,
        "created_at": "1970-01-01T00:00:00Z",
    }


@dataclass(frozen=True)
class UnservedTarget:
    """A model a rule sends traffic to that the providers would not resolve."""

    rule: str
    field: str  # to or moderation
    target: str
    reason: str


# The rule fields that name a model the gateway calls on the rule's behalf.
TARGET_FIELDS = ("to", "moderation")


def unserved_targets(
    rules: Mapping[str, RuleConfig], providers: Mapping[str, ProviderConfig]
) -> list[UnservedTarget]:
    """Every ``change_model`` / ``fallback`` / ``moderation`` target that ``providers``
    would not serve, resolved as a request naming it would be."""
    index = ModelIndex.of(providers)
    lost = []
    for name, rule in rules.items():
        for key in TARGET_FIELDS:
            target = getattr(rule, key)
            reason = _unserved(index, target) if target else None
            if reason is not None:
                lost.append(UnservedTarget(rule=name, field=key, target=target, reason=reason))
    return lost


def _unserved(index: ModelIndex, target: str) -> str | None:
    prefix, slash, _ = target.partition("/")
    if slash and prefix not in index.providers:
        return f'no provider named "{prefix}"'
    try:
        index.resolve(target)
    except ModelNotFound as err:
        return str(err) if slash else f'no provider serves "{target}"'
    except InvalidRequest as err:
        return str(err)
    return None


# The client APIs a provider of each kind answers: the mock answers both.
KIND_APIS: Mapping[str, frozenset[str]] = {
    "openai": frozenset({"openai"}),
    "anthropic": frozenset({"anthropic"}),
    "mock": frozenset({"openai", "anthropic"}),
}


def route_api(route: str) -> str:
    """The client API a route belongs to."""
    return "anthropic" if route in MESSAGES_ROUTES else "openai"


def speaks(provider: ProviderConfig, api: str) -> bool:
    """Whether ``provider`` answers requests of ``api`` ("openai" or "anthropic")."""
    return api in KIND_APIS.get(provider.kind, frozenset({"openai"}))


def crossing_targets(
    rules: Mapping[str, RuleConfig], providers: Mapping[str, ProviderConfig]
) -> list[UnservedTarget]:
    """Every ``change_model`` / ``fallback`` rule whose ``model`` trigger matches models of
    a provider speaking one API that its ``to`` does not speak: it would move requests
    between API families (an Anthropic request to an OpenAI-kind provider, or back)."""
    index = ModelIndex.of(providers)
    crossing = []
    for name, rule in rules.items():
        if rule.action not in ("change_model", "fallback") or not rule.to or not rule.model:
            continue
        try:
            target, _ = index.resolve(rule.to)
        except (InvalidRequest, ModelNotFound):
            continue  # unserved_targets says so
        for pname, provider in providers.items():
            # The mock answers both APIs: which one a request to it uses is not known here.
            apis = KIND_APIS.get(provider.kind, frozenset())
            lost = next(iter(apis), None) if len(apis) == 1 else None
            if (
                lost is not None
                and not speaks(target, lost)
                and any(model_matches(rule.model, f"{pname}/{m}") for m in provider.models)
            ):
                reason = (
                    f'moves {lost} requests for models of provider "{pname}" (kind '
                    f'"{provider.kind}") to "{rule.to}", of provider "{target.name}" '
                    f'(kind "{target.kind}"), which does not answer them'
                )
                crossing.append(
                    UnservedTarget(rule=name, field="to", target=rule.to, reason=reason)
                )
                break
    return crossing


def resolve_model(config: Config, name: str) -> tuple[ProviderConfig, str]:
    """Resolve ``name`` against ``config`` (see the module docstring for the rules)."""
    return ModelIndex.from_config(config).resolve(name)


def list_models(config: Config, api: str = "openai") -> dict[str, Any]:
    """The ``GET /v1/models`` answer; catch-all providers (empty lists) add nothing."""
    return ModelIndex.from_config(config).listing(api)
