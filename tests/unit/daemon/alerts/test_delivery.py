"""The delivery's retry schedule, and one post against a real receiver on loopback."""

from __future__ import annotations

import random
import socket
from typing import Any

import pytest
from aiohttp import web

from daemon.alerts.delivery import MAX_RETRY_S, Delivery, post
from daemon.alerts.outbox import Outbox
from daemon.providers.http_client import HttpClient
from tests.integration.webhook_receiver import Receiver


@pytest.mark.parametrize(
    ("attempt", "base"),
    [(1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, MAX_RETRY_S), (500, MAX_RETRY_S)],
)
def test_backoff_doubles_up_to_its_cap_with_jitter_below_it(attempt: int, base: float) -> None:
    delivery = Delivery(web.Application(), Outbox(), retry_s=1.0)
    random.seed(attempt)
    delays = [delivery.backoff(attempt) for _ in range(200)]
    assert all(base * 0.5 <= d <= base for d in delays)
    assert len(set(delays)) > 1  # jittered: failures together do not retry together


async def test_post_signs_the_body_and_reports_each_outcome(aiohttp_server: Any) -> None:
    receiver = Receiver(secret="k3y-0123456789", fail_first=1)
    server = await aiohttp_server(receiver.app())
    url = str(server.make_url("/hook"))
    client = HttpClient()
    try:
        assert await post(client, url, b'{"id":"x"}', "k3y-0123456789", 5) == (500, "HTTP 500")
        assert await post(client, url, b'{"id":"x"}', "k3y-0123456789", 5) == (204, None)
        assert await post(client, url, b'{"id":"x"}', None, 5) == (401, "HTTP 401")
        with socket.socket() as probe:  # a free port, closed: the connection is refused
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        status, error = await post(client, f"http://127.0.0.1:{closed}/hook", b"{}", None, 5)
    finally:
        client.close()
    assert [p.verified for p in receiver.posts] == [True, True, False]
    assert status is None and error is not None and error.startswith("ConnectionRefusedError")
