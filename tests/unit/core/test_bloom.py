"""The Bloom filter of evicted keys: never a miss, few false alarms, fixed size."""

from __future__ import annotations

import pytest

from waystone_cli.core.bloom import BloomFilter


def test_every_key_added_is_held_and_few_others_seem_to_be() -> None:
    bloom = BloomFilter(bits=1 << 16)  # about 13 bits per key below
    added = [("user", f"u{i}") for i in range(5_000)]
    for key in added:
        bloom.add(key)
    assert all(bloom.might_hold(key) for key in added)
    false_alarms = sum(bloom.might_hold(("user", f"new{i}")) for i in range(10_000))
    assert false_alarms < 200  # the expected rate at this load is about 0.5%


def test_an_empty_filter_holds_nothing() -> None:
    bloom = BloomFilter(bits=1 << 10)
    assert not any(bloom.might_hold(("group", str(i))) for i in range(1_000))


def test_the_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        BloomFilter(bits=1000)
