"""The request metrics render exactly as prometheus-client's own metrics would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon.telemetry.metrics import _Counter, _Histogram

BOUNDS = (0.0001, 0.001, 0.5, 1, 10)
VALUES = (0.0, 0.0001, 0.00010001, 0.0009, 0.001, 0.3, 0.5, 1, 1.5, 10, 11, 1e9)


def _samples(text: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _render(*families: _Counter | _Histogram) -> bytes:
    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            for family in families:
                yield family.family()

    registry = CollectorRegistry()
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


def test_histogram_matches_prometheus_client_bucket_for_bucket() -> None:
    ours = _Histogram("lat_seconds", "Latency.", ("route",), BOUNDS)
    registry = CollectorRegistry()
    theirs = Histogram("lat_seconds", "Latency.", ("route",), buckets=BOUNDS, registry=registry)
    for i, value in enumerate(VALUES):
        route = "a" if i % 3 else "b"
        ours.observe((route,), value)
        theirs.labels(route).observe(value)
    assert _samples(_render(ours)) == _samples(generate_latest(registry))


def test_counter_matches_prometheus_client() -> None:
    ours = _Counter("tokens", "Tokens.", ("model", "type"))
    registry = CollectorRegistry()
    theirs = Counter("tokens", "Tokens.", ("model", "type"), registry=registry)
    for model, kind, amount in [("m", "input", 3), ("m", "output", 2), ("m", "input", 4.5)]:
        ours.inc((model, kind), amount)
        theirs.labels(model, kind).inc(amount)
    assert _samples(_render(ours)) == _samples(generate_latest(registry))
    assert ("tokens_total", (("model", "m"), ("type", "input")), 7.5) in _samples(_render(ours))


def test_an_unused_family_has_no_samples() -> None:
    assert _samples(_render(_Counter("x", "X.", ("user",)))) == set()


def test_a_counter_saturates_at_the_largest_float_instead_of_raising() -> None:
    import sys

    ours = _Counter("tokens", "Tokens.", ("type",))
    ours.inc(("input",), 2**63)
    ours.inc(("input",), 10**400)  # beyond a float: saturates
    ours.inc(("input",), 10**400)
    ours.inc(("output",), 2**63)
    samples = _samples(_render(ours))
    assert ("tokens_total", (("type", "input"),), sys.float_info.max) in samples
    assert ("tokens_total", (("type", "output"),), float(2**63)) in samples
