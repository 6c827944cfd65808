"""When counters may be evicted at all: only while the ledger keeps every row they count."""

from __future__ import annotations

from datetime import timedelta

from daemon.request.eviction import rebuilds_exactly
from waystone_cli.core.config import parse_config, parse_toml
from waystone_cli.core.counters import KEEP


def retaining(days: int) -> str:
    return f'[rules.keep]\naction = "retain"\ndays = {days}\n'


def test_a_retain_rule_shorter_than_the_counters_span_keeps_counters_in_memory() -> None:
    assert rebuilds_exactly(parse_config(parse_toml("")), KEEP)
    assert rebuilds_exactly(parse_config(parse_toml(retaining(32))), KEEP)
    assert not rebuilds_exactly(parse_config(parse_toml(retaining(7))), KEEP)
    assert not rebuilds_exactly(parse_config(parse_toml(retaining(32))), timedelta(days=90))
