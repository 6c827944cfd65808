"""The counters' Prometheus metrics, read from the store when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from daemon.counters.redis_store import RedisStore


class CountersCollector(Collector):
    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        store = self.store
        up = GaugeMetricFamily(
            "waystone_redis_up", "Whether Redis, which holds the counters, is reachable."
        )
        up.add_metric([], 1 if store.link.up else 0)
        local = GaugeMetricFamily(
            "waystone_counters_local",
            "1 while this instance counts on its own in-memory counters (on_redis_error = local).",
        )
        local.add_metric([], 1 if store.local else 0)
        trips = CounterMetricFamily("waystone_redis_round_trips", "Batches written to Redis.")
        trips.add_metric([], store.link.round_trips)
        commands = CounterMetricFamily("waystone_redis_commands", "Commands sent to Redis.")
        commands.add_metric([], store.link.commands)
        rebuilds = CounterMetricFamily(
            "waystone_counters_rebuilds", "Times the Redis counters were rebuilt from the ledger."
        )
        rebuilds.add_metric([], store.rebuilds)
        yield from (up, local, trips, commands, rebuilds)
