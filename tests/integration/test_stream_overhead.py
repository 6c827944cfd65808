"""A stream's overhead is the gateway's own time: the provider's pauses between chunks
are upstream time, in the row's ``overhead_ms`` and in the overhead histogram alike."""

from __future__ import annotations

from tests.integration.conftest import Gateway
from tests.integration.test_observability import _of, _scrape

PAUSE_S = 0.25  # between each of the fake chat stream's 5 chunks: 1.25 s upstream


async def test_pauses_between_stream_chunks_are_not_overhead(gateway: Gateway) -> None:
    gateway.provider.chunk_pause_s = PAUSE_S
    stream = await gateway.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from fake"
    [row] = await gateway.rows("SELECT latency_ms, overhead_ms FROM requests")
    assert row["latency_ms"] >= 4 * PAUSE_S * 1000
    # The gateway's own work on a 5-chunk stream is a few ms; a loaded test machine
    # gets a generous bound, still far below one pause.
    assert row["overhead_ms"] < PAUSE_S * 1000 / 2
    samples = await _scrape(gateway)
    [overhead_s] = _of(samples, "waystone_gateway_overhead_seconds_sum").values()
    assert overhead_s == row["overhead_ms"] / 1000
