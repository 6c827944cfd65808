"""What a request cost in USD: usage times the model's per-million-token prices.

Prices come from the config's ``[prices]`` table (keyed ``provider/model``, which wins,
or ``model``), else from genai-prices' bundled table.  genai-prices is looked up with
the provider's name as its provider id; a name it does not know (a custom provider such
as "local" or "eu-proxy") is tried by the provider's base URL, then by the model name
alone.  A provider genai-prices knows that lacks the model leaves it unpriced rather
than borrowing another provider's price for the same name.

A model with no known price is unpriced: ``price`` and ``cost`` return None, never 0.
Models that genai-prices prices only by units waystone does not count (audio hours,
images, pages) are unpriced too.

The arithmetic is waystone's own, with the rates memoized per (provider, model): a
genai-prices calculation costs far more than a memo hit and this formula.
Counts follow OpenAI's conventions (``input_tokens`` includes cached and audio tokens,
``output_tokens`` includes reasoning tokens), the same convention genai-prices uses,
where the specific counts are carved out of the total they belong to.  Cache writes
(Anthropic's ``cache_creation_input_tokens``) are carved out of the input the same way,
and the writes kept for an hour (``cache_write_1h_tokens``) out of the writes:

    cost = (input - cached - writes - audio) x input + cached x (cached_input or input)
         + (writes - write_1h) x (cache_write or input)
         + write_1h x (cache_write_1h or cache_write or input)
         + audio x (audio_input or input)
         + (output - reasoning) x output + reasoning x (reasoning or output)
         + per_request                                     (rates per million tokens)

quantized to 1e-10 USD (the ledger's scale).  Tiered prices (genai-prices' "cliff"
model: above N input tokens every token pays the tier's rate) are kept as tiers.
Rates are read once per Pricer; the daemon builds one per config snapshot, so a table
whose prices change on a date is picked up at the next reload or restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, NamedTuple

from waystone_cli.core.config import Price
from waystone_cli.core.usage import Usage

QUANTUM = Decimal("1e-10")
MILLION = Decimal(1_000_000)
_MEMO_LIMIT = 4096  # model names come from traffic; do not grow without bound
_ZERO = Decimal(0)


@dataclass(frozen=True)
class PriceInfo:
    """USD per million tokens (``per_request``: USD per request); None = as the base rate."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    audio_input: Decimal | None = None
    per_request: Decimal = _ZERO
    cache_write: Decimal | None = None  # a cache write kept five minutes (Anthropic's default)
    cache_write_1h: Decimal | None = None  # kept an hour; None = as ``cache_write``
    source: str = "config"  # "config" or "genai-prices"
    ref: str = ""  # the [prices] key, or genai-prices' "provider/model-id"
    tiers: tuple[tuple[int, PriceInfo], ...] = ()  # (start, rates) for input tokens > start

    def rates_for(self, input_tokens: int) -> PriceInfo:
        for start, rates in reversed(self.tiers):
            if input_tokens > start:
                return rates
        return self

    def cost(self, usage: Usage) -> Decimal:
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        r = self.rates_for(input_tokens) if self.tiers else self
        # Each count is capped by the total it is part of (``min``, spelled out: this
        # runs on every request).
        cached = usage.cached_tokens if usage.cached_tokens < input_tokens else input_tokens
        writes = write_1h = 0
        if usage.cache_write_tokens:
            writes = min(usage.cache_write_tokens, input_tokens - cached)
            write_1h = min(usage.cache_write_1h_tokens, writes)
        audio = 0
        if r.audio_input is not None:
            audio = min(usage.audio_tokens, input_tokens - cached - writes)
        reasoning = usage.reasoning_tokens
        if reasoning > output_tokens:
            reasoning = output_tokens
        units = r.__dict__.get("_units", _UNSET)
        if units is _UNSET:
            units = _unit_rates(r)
            object.__setattr__(r, "_units", units)  # memoized on the frozen instance
        if units is not None:
            # The same sum in integers of 1e-10 USD: exact, so it equals the Decimal
            # formula below quantized, at a fraction of its cost.
            u_in, u_cached, u_write, u_write_1h, u_audio, u_out, u_reasoning, u_request = units
            total = (
                (input_tokens - cached - writes - audio) * u_in
                + cached * u_cached
                + (writes - write_1h) * u_write
                + write_1h * u_write_1h
                + audio * u_audio
                + (output_tokens - reasoning) * u_out
                + reasoning * u_reasoning
                + u_request
            )
            return Decimal(total) * QUANTUM
        cache_write = _or(r.cache_write, r.input)
        per_million = (
            (input_tokens - cached - writes - audio) * r.input
            + cached * _or(r.cached_input, r.input)
            + (writes - write_1h) * cache_write
            + write_1h * _or(r.cache_write_1h, cache_write)
            + audio * _or(r.audio_input, r.input)
            + (output_tokens - reasoning) * r.output
            + reasoning * _or(r.reasoning, r.output)
        )
        return (per_million / MILLION + r.per_request).quantize(QUANTUM)

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        """The cost of plain input and output tokens, in float: for the estimates a
        request reserves before it is forwarded, where exact decimals buy nothing."""
        r = self.rates_for(input_tokens)
        rates = r.__dict__.get("_floats")
        if rates is None:
            rates = (float(r.input), float(r.output), float(r.per_request))
            object.__setattr__(r, "_floats", rates)  # memoized on the frozen instance
        return (input_tokens * rates[0] + output_tokens * rates[1]) / 1e6 + rates[2]


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


_UNSET = object()
# A rate per million tokens times this is its price per token in units of 1e-10 USD.
_UNITS_PER_TOKEN = Decimal(10) ** 10 / MILLION


class _Units(NamedTuple):
    """A ``PriceInfo``'s rates in whole units of 1e-10 USD per token (per request)."""

    input: int
    cached_input: int
    cache_write: int
    cache_write_1h: int
    audio_input: int
    output: int
    reasoning: int
    per_request: int


def _unit_rates(r: PriceInfo) -> _Units | None:
    """``r``'s rates as whole units of 1e-10 USD per token (the request price per
    request), or None when one is not a whole number of units (then ``cost`` uses
    Decimals)."""
    cache_write = _or(r.cache_write, r.input)
    rates = {
        "input": r.input * _UNITS_PER_TOKEN,
        "cached_input": _or(r.cached_input, r.input) * _UNITS_PER_TOKEN,
        "cache_write": cache_write * _UNITS_PER_TOKEN,
        "cache_write_1h": _or(r.cache_write_1h, cache_write) * _UNITS_PER_TOKEN,
        "audio_input": _or(r.audio_input, r.input) * _UNITS_PER_TOKEN,
        "output": r.output * _UNITS_PER_TOKEN,
        "reasoning": _or(r.reasoning, r.output) * _UNITS_PER_TOKEN,
        "per_request": r.per_request / QUANTUM,
    }
    if any(rate != rate.to_integral_value() for rate in rates.values()):
        return None
    return _Units(**{name: int(rate) for name, rate in rates.items()})


class Pricer:
    """Prices by (provider, model), memoized; ``on_unpriced`` hears of each miss once."""

    def __init__(
        self,
        overrides: Mapping[str, Price],
        *,
        base_urls: Mapping[str, str | None] | None = None,
        on_unpriced: Callable[[str, str], None] | None = None,
    ) -> None:
        self._overrides = {key: _from_override(key, p) for key, p in overrides.items()}
        self._base_urls = dict(base_urls or {})
        self._on_unpriced = on_unpriced
        self._memo: dict[tuple[str, str], PriceInfo | None] = {}

    def price(self, provider: str, model: str) -> PriceInfo | None:
        key = (provider, model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        info = self._overrides.get(f"{provider}/{model}") or self._overrides.get(model)
        if info is None:
            info = _from_table(provider, model, self._base_urls.get(provider))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = info
        if info is None and self._on_unpriced is not None:
            self._on_unpriced(provider, model)
        return info

    def warm(self, models: Iterable[tuple[str, str]]) -> None:
        """Look up every (provider, model) now, so that no request pays for importing
        genai-prices or for a model's first lookup."""
        for provider, model in models:
            self.price(provider, model)

    def cost(self, provider: str, model: str, usage: Usage) -> Decimal | None:
        info = self.price(provider, model)
        return None if info is None else info.cost(usage)

    def estimate(
        self, provider: str, model: str, input_tokens: int, output_tokens: int
    ) -> float | None:
        """``PriceInfo.estimate`` for the model, or None when it is unpriced."""
        info = self.price(provider, model)
        return None if info is None else info.estimate(input_tokens, output_tokens)


def _from_override(key: str, price: Price) -> PriceInfo:
    return PriceInfo(
        input=_dec(price.input),
        output=_dec(price.output),
        cached_input=None if price.cached_input is None else _dec(price.cached_input),
        reasoning=None if price.reasoning is None else _dec(price.reasoning),
        cache_write=None if price.cache_write is None else _dec(price.cache_write),
        cache_write_1h=None if price.cache_write_1h is None else _dec(price.cache_write_1h),
        ref=key,
    )


def _dec(value: float) -> Decimal:
    # Through str, so 0.15 is 0.15 and not the binary float's 0.1499999...
    return Decimal(str(value))


def _from_table(provider: str, model: str, base_url: str | None) -> PriceInfo | None:
    # Imported here: genai-prices takes about 0.3 s to import, which the CLI should not
    # pay for commands that never price anything.
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    attempts: list[dict[str, Any]] = [{"provider_id": provider}]
    if find_provider_by_id(get_snapshot().providers, provider) is None:
        attempts = [{"provider_api_url": base_url}] if base_url else []
        attempts.append({})
    for kwargs in attempts:
        try:
            calc = calc_price(GenaiUsage(), model_ref=model, **kwargs)
        except LookupError:
            continue
        return _from_model_price(calc.model_price.__dict__, f"{calc.provider.id}/{calc.model.id}")
    return None


def _from_model_price(prices: Mapping[str, Any], ref: str) -> PriceInfo | None:
    """Rates from genai-prices' price keys; None if neither input nor output is priced."""
    if prices.get("input_mtok") is None and prices.get("output_mtok") is None:
        return None
    starts = sorted({t.start for v in prices.values() for t in getattr(v, "tiers", ())})
    base = _rates_at(prices, -1, ref)
    tiers = tuple((start, _rates_at(prices, start, ref)) for start in starts)
    return replace(base, tiers=tiers)


def _rates_at(prices: Mapping[str, Any], above: int, ref: str) -> PriceInfo:
    def rate(key: str) -> Decimal | None:
        value = prices.get(key)
        if value is None or isinstance(value, Decimal):
            return value
        # TieredPrices: the last tier whose start the input count exceeds, else the base.
        chosen: Decimal = value.base
        for tier in value.tiers:
            if above >= tier.start:
                chosen = tier.price
        return chosen

    per_thousand = rate("requests_kcount")
    return PriceInfo(
        input=rate("input_mtok") or _ZERO,
        output=rate("output_mtok") or _ZERO,
        cached_input=rate("cache_read_mtok"),
        reasoning=rate("output_reasoning_mtok"),
        audio_input=rate("input_audio_mtok"),
        per_request=_ZERO if per_thousand is None else per_thousand / 1000,
        cache_write=rate("cache_write_mtok"),
        cache_write_1h=rate("cache_write_1h_mtok"),
        source="genai-prices",
        ref=ref,
    )
