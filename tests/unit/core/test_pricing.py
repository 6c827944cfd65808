from __future__ import annotations

from decimal import Decimal

import pytest

from waystone_cli.core.config import Price
from waystone_cli.core.pricing import PriceInfo, Pricer
from waystone_cli.core.usage import Usage

OVERRIDES = {
    "local/mock-large": Price(input=1.0, output=4.0),
    "mock-large": Price(input=9.0, output=9.0),  # loses to the provider/model key
    "mock-small": Price(input=0.15, output=0.6, cached_input=0.075, reasoning=2.4),
    "free": Price(input=0, output=0),
}


@pytest.mark.parametrize(
    ("provider", "model", "usage", "cost"),
    [
        # 1,000 x $1/M + 500 x $4/M = 0.001 + 0.002
        ("local", "mock-large", Usage(1000, 500), Decimal("0.0030000000")),
        # the bare key applies to another provider: 1,000 x 9 + 500 x 9, per million
        ("other", "mock-large", Usage(1000, 500), Decimal("0.0135000000")),
        # (1,000 - 400) x 0.15 + 400 x 0.075 + (500 - 100) x 0.6 + 100 x 2.4, per million
        # = 90 + 30 + 240 + 240 = 600 / 1e6
        (
            "local",
            "mock-small",
            Usage(1000, 500, cached_tokens=400, reasoning_tokens=100),
            Decimal("0.0006000000"),
        ),
        # 7 x 0.15 + 3 x 0.6 = 1.05 + 1.8 = 2.85 per million
        ("local", "mock-small", Usage(7, 3), Decimal("0.0000028500")),
        # 1 token at $0.15/M = 1.5e-7 exactly, kept to the ledger's 1e-10
        ("local", "mock-small", Usage(1, 0), Decimal("0.0000001500")),
        ("local", "free", Usage(1000, 1000), Decimal("0E-10")),
        ("local", "mock-large", Usage(), Decimal("0E-10")),
    ],
)
def test_override_prices_are_exact(provider: str, model: str, usage: Usage, cost: Decimal) -> None:
    assert Pricer(OVERRIDES).cost(provider, model, usage) == cost


def test_override_without_cached_or_reasoning_rates_bills_them_at_the_base_rates() -> None:
    # (800 x 1) + (200 x 1) + (300 x 4) + (100 x 4) = 2,600 per million
    usage = Usage(1000, 400, cached_tokens=200, reasoning_tokens=100)
    assert Pricer(OVERRIDES).cost("local", "mock-large", usage) == Decimal("0.0026000000")


def test_price_reports_the_override_rates_and_its_key() -> None:
    assert Pricer(OVERRIDES).price("local", "mock-small") == PriceInfo(
        input=Decimal("0.15"),
        output=Decimal("0.6"),
        cached_input=Decimal("0.075"),
        reasoning=Decimal("2.4"),
        source="config",
        ref="mock-small",
    )


@pytest.mark.parametrize(
    ("provider", "model", "usage", "cost"),
    [
        # gpt-4o: $2.50 input, $1.25 cached input, $10 output per million.
        # (1,000 - 200) x 2.5 + 200 x 1.25 + 500 x 10 = 2,000 + 250 + 5,000 = 7,250 per million
        ("openai", "gpt-4o", Usage(1000, 500, cached_tokens=200), Decimal("0.0072500000")),
        # a dated snapshot name finds the same prices
        ("openai", "gpt-4o-2024-08-06", Usage(1_000_000, 0), Decimal("2.5000000000")),
        # o3: $2 input, $0.50 cached, $8 output; reasoning tokens are output tokens
        # (1,000 - 600) x 2 + 600 x 0.5 + 2,000 x 8 = 800 + 300 + 16,000 = 17,100 per million
        (
            "openai",
            "o3",
            Usage(1000, 2000, cached_tokens=600, reasoning_tokens=1500),
            Decimal("0.0171000000"),
        ),
        # a provider name genai-prices does not know: found by the model name alone
        ("eu-proxy", "gpt-4o", Usage(1000, 500, cached_tokens=200), Decimal("0.0072500000")),
        # gemini-2.5-pro is tiered: above 200,000 input tokens every token pays $2.50 / $15
        ("google", "gemini-2.5-pro", Usage(100_000, 1000), Decimal("0.1350000000")),
        ("google", "gemini-2.5-pro", Usage(300_000, 1000), Decimal("0.7650000000")),
    ],
)
def test_bundled_table_prices(provider: str, model: str, usage: Usage, cost: Decimal) -> None:
    assert Pricer({}).cost(provider, model, usage) == cost


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        ("gpt-4o", Usage(1234, 567, cached_tokens=1000)),
        ("o3", Usage(98_765, 4321, cached_tokens=50_000, reasoning_tokens=4000)),
        ("gpt-4o-mini", Usage(10, 1)),
        ("text-embedding-3-small", Usage(12_345, 0)),
    ],
)
def test_bundled_costs_agree_with_genai_prices_own_calculation(model: str, usage: Usage) -> None:
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    theirs = calc_price(
        GenaiUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
        ),
        model_ref=model,
        provider_id="openai",
    ).total_price
    assert Pricer({}).cost("openai", model, usage) == theirs.quantize(Decimal("1e-10"))


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("local", "mock-small-unlisted"),  # unknown anywhere
        ("openai", "mock-large"),  # a provider genai-prices knows, without the model
        ("openai", "whisper-1"),  # priced by audio hours, which waystone does not count
    ],
)
def test_unknown_models_are_unpriced_never_zero(provider: str, model: str) -> None:
    pricer = Pricer({})
    assert pricer.price(provider, model) is None
    assert pricer.cost(provider, model, Usage(1000, 1000)) is None


def test_the_provider_base_url_identifies_a_custom_named_provider() -> None:
    pricer = Pricer({}, base_urls={"corp": "https://api.openai.com/v1"})
    info = pricer.price("corp", "gpt-4o")
    assert info is not None
    assert (info.source, info.ref, info.input, info.output) == (
        "genai-prices",
        "openai/gpt-4o",
        Decimal("2.5"),
        Decimal("10"),
    )


def test_lookups_are_memoized_and_each_miss_is_reported_once() -> None:
    misses: list[tuple[str, str]] = []
    pricer = Pricer(OVERRIDES, on_unpriced=lambda p, m: misses.append((p, m)))
    first = pricer.price("openai", "gpt-4o")
    assert pricer.price("openai", "gpt-4o") is first
    for _ in range(3):
        assert pricer.price("local", "nope") is None
    assert misses == [("local", "nope")]


@pytest.mark.parametrize(("input_tokens", "output_tokens"), [(0, 0), (1200, 1024), (250_000, 9)])
def test_the_float_estimate_agrees_with_the_exact_cost(
    input_tokens: int, output_tokens: int
) -> None:
    low = PriceInfo(input=Decimal("2.5"), output=Decimal("10"), per_request=Decimal("0.001"))
    high = PriceInfo(input=Decimal("5"), output=Decimal("15"))
    tiered = PriceInfo(input=Decimal("2.5"), output=Decimal("10"), tiers=((200_000, high),))
    for info in (low, tiered):
        exact = info.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens))
        assert info.estimate(input_tokens, output_tokens) == pytest.approx(float(exact), abs=1e-10)
    assert Pricer({}).estimate("local", "no-such-model", 10, 10) is None


def _decimal_formula(r: PriceInfo, usage: Usage) -> Decimal:
    """The module docstring's formula, in Decimals, quantized to the ledger's scale."""
    r = r.rates_for(usage.input_tokens)
    cached = min(usage.cached_tokens, usage.input_tokens)
    audio = min(usage.audio_tokens, usage.input_tokens - cached) if r.audio_input is not None else 0
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    per_million = (
        (usage.input_tokens - cached - audio) * r.input
        + cached * (r.cached_input if r.cached_input is not None else r.input)
        + audio * (r.audio_input if r.audio_input is not None else r.input)
        + (usage.output_tokens - reasoning) * r.output
        + reasoning * (r.reasoning if r.reasoning is not None else r.output)
    )
    return (per_million / Decimal(1_000_000) + r.per_request).quantize(Decimal("1e-10"))


@pytest.mark.parametrize(
    "rates",
    [
        # whole units of 1e-10 USD per token: the integer path
        PriceInfo(input=Decimal("0.15"), output=Decimal("0.6"), cached_input=Decimal("0.075")),
        PriceInfo(
            input=Decimal("2.5"),
            output=Decimal("10"),
            cached_input=Decimal("1.25"),
            reasoning=Decimal("40"),
            audio_input=Decimal("40"),
            per_request=Decimal("0.0001"),
        ),
        PriceInfo(
            input=Decimal("1.25"),
            output=Decimal("10"),
            tiers=((200_000, PriceInfo(input=Decimal("2.5"), output=Decimal("15"))),),
        ),
        # fractions of a unit per token: the Decimal path, which rounds once at the end
        PriceInfo(input=Decimal("0.00003"), output=Decimal("0.123456789")),
        PriceInfo(input=Decimal("1"), output=Decimal("1"), per_request=Decimal("1e-12")),
    ],
)
def test_cost_equals_the_decimal_formula_for_any_usage(rates: PriceInfo) -> None:
    import random

    rng = random.Random(3)
    for _ in range(2000):
        input_tokens = rng.choice([0, 1, 7, 999, 200_000, 200_001, rng.randrange(10**7)])
        output_tokens = rng.choice([0, 1, rng.randrange(10**6)])
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=rng.choice([0, rng.randrange(input_tokens + 2)]),
            reasoning_tokens=rng.choice([0, rng.randrange(output_tokens + 2)]),
            audio_tokens=rng.choice([0, rng.randrange(input_tokens + 2)]),
        )
        got = rates.cost(usage)
        expected = _decimal_formula(rates, usage)
        assert got == expected and got.as_tuple().exponent == -10, (usage, got, expected)


def test_a_new_snapshot_has_looked_up_every_configured_model_before_it_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first request must not pay for importing genai-prices or a first lookup."""
    from daemon.state import Snapshot
    from waystone_cli.core import pricing
    from waystone_cli.core.config import parse_config

    looked_up: list[tuple[str, str]] = []
    real = pricing._from_table

    def counting(provider: str, model: str, base_url: str | None) -> PriceInfo | None:
        looked_up.append((provider, model))
        return real(provider, model, base_url)

    monkeypatch.setattr(pricing, "_from_table", counting)
    config = parse_config(
        {
            "providers": {
                "openai": {"base_url": "https://api.openai.com/v1", "models": ["gpt-4o-mini"]},
                "local": {"kind": "mock", "models": ["mock-small"]},
            }
        }
    )
    snapshot = Snapshot.build(config)
    assert sorted(looked_up) == [("local", "mock-small"), ("openai", "gpt-4o-mini")]
    snapshot.pricer.price("openai", "gpt-4o-mini")
    assert len(looked_up) == 2


# --- cache writes (Anthropic) ------------------------------------------------------
#
# Anthropic reports uncached input, cache reads and cache writes apart; waystone's
# input_tokens is their sum, cached_tokens the reads, cache_write_tokens the writes (of
# which cache_write_1h_tokens were written for an hour), as genai-prices counts them.


@pytest.mark.parametrize(
    ("model", "usage", "write_1h", "cost"),
    [
        # claude-sonnet-4: $3 input, $0.30 cache read, $3.75 cache write (5 minutes),
        # $6 cache write (1 hour), $15 output per million.
        # (10,000 - 3,000 - 2,000) x 3 + 3,000 x 0.3 + 2,000 x 3.75 + 500 x 15
        # = 15,000 + 900 + 7,500 + 7,500 = 30,900 per million
        (
            "claude-sonnet-4-20250514",
            Usage(10_000, 500, cached_tokens=3_000, cache_write_tokens=2_000),
            0,
            Decimal("0.0309000000"),
        ),
        # the same with 500 of the writes for an hour:
        # 15,000 + 900 + 1,500 x 3.75 + 500 x 6 + 7,500 = 15,000 + 900 + 5,625 + 3,000 + 7,500
        # = 32,025 per million
        (
            "claude-sonnet-4-20250514",
            Usage(10_000, 500, cached_tokens=3_000, cache_write_tokens=2_000),
            500,
            Decimal("0.0320250000"),
        ),
        # claude-3-5-haiku: $0.80 input, $0.08 cache read, $1 cache write, $1.60 for an
        # hour, $4 output.  (20,000 - 12,000 - 4,000) x 0.8 + 12,000 x 0.08 + 3,000 x 1
        # + 1,000 x 1.6 + 1,000 x 4 = 3,200 + 960 + 3,000 + 1,600 + 4,000 = 12,760 per million
        (
            "claude-3-5-haiku-latest",
            Usage(20_000, 1_000, cached_tokens=12_000, cache_write_tokens=4_000),
            1_000,
            Decimal("0.0127600000"),
        ),
        # only writes, no reads: 1,000 x 0.8 + 9,000 x 1 = 9,800 per million
        (
            "claude-3-5-haiku-latest",
            Usage(10_000, 0, cache_write_tokens=9_000),
            0,
            Decimal("0.0098000000"),
        ),
    ],
)
def test_anthropic_cache_reads_and_writes_are_priced_at_their_own_rates(
    model: str, usage: Usage, write_1h: int, cost: Decimal
) -> None:
    pricer = Pricer({})
    usage = usage._replace(cache_write_1h_tokens=write_1h)
    assert pricer.cost("anthropic", model, usage) == cost


@pytest.mark.parametrize(
    ("model", "usage", "write_1h"),
    [
        (
            "claude-sonnet-4-20250514",
            Usage(12_345, 678, cached_tokens=5_000, cache_write_tokens=3_210),
            0,
        ),  # fmt: skip
        (
            "claude-sonnet-4-20250514",
            Usage(12_345, 678, cached_tokens=5_000, cache_write_tokens=3_210),
            1_234,
        ),  # fmt: skip
        ("claude-3-5-haiku-latest", Usage(999, 1, cache_write_tokens=998), 998),
        ("claude-opus-4-1", Usage(50_000, 4_000, cached_tokens=49_000), 0),
        # tiered: above 200,000 input tokens (reads and writes included) every rate rises
        (
            "claude-sonnet-4-5",
            Usage(150_000, 100, cached_tokens=60_000, cache_write_tokens=30_000),
            10_000,
        ),  # fmt: skip
        (
            "claude-sonnet-4-5",
            Usage(300_000, 100, cached_tokens=100_000, cache_write_tokens=50_000),
            10_000,
        ),  # fmt: skip
    ],
)
def test_anthropic_costs_agree_with_genai_prices_own_calculation(
    model: str, usage: Usage, write_1h: int
) -> None:
    from genai_prices import Usage as GenaiUsage
    from genai_prices import calc_price

    theirs = calc_price(
        GenaiUsage(
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=write_1h,
            output_tokens=usage.output_tokens,
        ),
        model_ref=model,
        provider_id="anthropic",
    ).total_price
    ours = Pricer({}).cost("anthropic", model, usage._replace(cache_write_1h_tokens=write_1h))
    assert ours == theirs.quantize(Decimal("1e-10"))


def test_the_bundled_anthropic_rates_are_read_with_their_cache_write_prices() -> None:
    # A provider named otherwise is found by its base URL.
    info = Pricer({}, base_urls={"claude": "https://api.anthropic.com"}).price(
        "claude", "claude-3-5-haiku-latest"
    )
    assert info is not None
    assert (info.ref, info.input, info.cached_input, info.cache_write, info.cache_write_1h) == (
        "anthropic/claude-3-5-haiku-latest",
        Decimal("0.8"),
        Decimal("0.08"),
        Decimal("1"),
        Decimal("1.6"),
    )


def test_an_override_prices_cache_writes_at_its_cache_write_rate() -> None:
    prices = {
        "claude-x": Price(input=3, output=15, cached_input=0.3, cache_write=3.75),
        "claude-y": Price(input=3, output=15, cache_write=3.75, cache_write_1h=6),
        "claude-z": Price(input=3, output=15),
    }
    usage = Usage(10_000, 500, cached_tokens=3_000, cache_write_tokens=2_000)
    pricer = Pricer(prices)
    # 5,000 x 3 + 900 + 2,000 x 3.75 + 7,500 = 30,900; an hour's writes at the same
    # cache_write rate when no cache_write_1h is given
    assert pricer.cost("x", "claude-x", usage) == Decimal("0.0309000000")
    hour = usage._replace(cache_write_1h_tokens=500)
    assert pricer.cost("x", "claude-x", hour) == Decimal("0.0309")
    # reads at the input rate: 5,000 x 3 + 3,000 x 3 + 1,500 x 3.75 + 500 x 6 + 7,500
    # = 15,000 + 9,000 + 5,625 + 3,000 + 7,500 = 40,125
    assert pricer.cost("y", "claude-y", hour) == Decimal("0.040125")
    # no cache rates at all: every input token at the input rate, 10,000 x 3 + 7,500
    assert pricer.cost("z", "claude-z", hour) == Decimal("0.0375")


def test_cache_counts_beyond_their_totals_are_capped() -> None:
    info = PriceInfo(
        input=Decimal(1), output=Decimal(0), cached_input=Decimal(0), cache_write=Decimal(10)
    )
    # reads take 80 of the 100 input tokens, so at most 20 were written (at 10 each),
    # and an hour's writes are at most the writes
    usage = Usage(100, 0, cached_tokens=80, cache_write_tokens=50)
    assert info.cost(usage) == Decimal("0.0002000000")
    assert info.cost(usage._replace(cache_write_1h_tokens=999)) == Decimal("0.0002000000")


def _formula_with_cache_writes(r: PriceInfo, usage: Usage) -> Decimal:
    """The module docstring's formula with cache writes, in Decimals."""
    r = r.rates_for(usage.input_tokens)
    cached = min(usage.cached_tokens, usage.input_tokens)
    writes = min(usage.cache_write_tokens, usage.input_tokens - cached)
    write_1h = min(usage.cache_write_1h_tokens, writes)
    cache_write = r.cache_write if r.cache_write is not None else r.input
    per_million = (
        (usage.input_tokens - cached - writes) * r.input
        + cached * (r.cached_input if r.cached_input is not None else r.input)
        + (writes - write_1h) * cache_write
        + write_1h * (r.cache_write_1h if r.cache_write_1h is not None else cache_write)
        + usage.output_tokens * r.output
    )
    return (per_million / Decimal(1_000_000) + r.per_request).quantize(Decimal("1e-10"))


@pytest.mark.parametrize(
    "rates",
    [
        PriceInfo(
            input=Decimal("3"),
            output=Decimal("15"),
            cached_input=Decimal("0.3"),
            cache_write=Decimal("3.75"),
            cache_write_1h=Decimal("6"),
        ),
        PriceInfo(input=Decimal("0.8"), output=Decimal("4"), cache_write=Decimal("1")),
        PriceInfo(
            input=Decimal("3"),
            output=Decimal("15"),
            cache_write=Decimal("3.75"),
            tiers=((200_000, PriceInfo(input=Decimal("6"), output=Decimal("22.5"))),),
        ),
        # fractions of a unit per token: the Decimal path
        PriceInfo(input=Decimal("1"), output=Decimal("1"), cache_write=Decimal("0.00001")),
    ],
)
def test_cost_with_cache_writes_equals_the_decimal_formula(rates: PriceInfo) -> None:
    import random

    rng = random.Random(5)
    for _ in range(2000):
        input_tokens = rng.choice([0, 1, 7, 200_000, 200_001, rng.randrange(10**7)])
        cached = rng.choice([0, rng.randrange(input_tokens + 2)])
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=rng.randrange(10**5),
            cached_tokens=cached,
            cache_write_tokens=rng.choice([0, rng.randrange(input_tokens + 2)]),
        )
        usage = usage._replace(
            cache_write_1h_tokens=rng.choice([0, rng.randrange(usage.cache_write_tokens + 2)])
        )
        got = rates.cost(usage)
        expected = _formula_with_cache_writes(rates, usage)
        assert got == expected and got.as_tuple().exponent == -10, (usage, got)
