"""Alerts on real traffic, posted to a real receiver on loopback (``webhook_receiver``).

Costs are worked out by hand (as in ``test_self_service``): a chat on up/gpt-test with a
40-character prompt and ``max_tokens=5`` costs 21e-6 USD.  Against a daily budget of
1e-4 the third chat brings alice to 63e-6 (63%: the 50% threshold), the fourth to 84e-6
(80%), the fifth to 105e-6 (100%).
"""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.alerts.delivery import DELIVERY
from daemon.state import LEDGER
from daemon.state import OBSERVER as OBSERVER_KEY
from tests.integration.conftest import Gateway
from tests.integration.test_spike import SPIKE
from tests.integration.webhook_receiver import Receiver
from waystone_cli.core.alerts import event_id
from waystone_cli.core.windows import window_start
from waystone_cli.ledger.access import run_local, run_query
from waystone_cli.ledger.alerts import list_alerts

PROMPT = "x" * 40
SECRET = "whsec-test-0123456789"


def _config(port: int, over: float = 0.0001, extra: str = "") -> str:
    return f"""
[alerts]
webhook = "http://127.0.0.1:{port}/hook"
secret = "env:TEST_WEBHOOK_SECRET"
timeout_s = 30
{extra}
[rules.daily]
usage = {{ metric = "cost_usd", window = "day", over = {over} }}
action = "block"
[rulesets.everyone]
when = "always"
rules = ["daily"]
"""


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)


async def _receiver(aiohttp_server: Any, **kwargs: Any) -> tuple[Receiver, TestServer]:
    receiver = Receiver(secret=SECRET, **kwargs)
    server = await aiohttp_server(receiver.app())
    return receiver, server


async def _chats(client: openai.AsyncOpenAI, n: int, user: str = "alice") -> None:
    for _ in range(n):
        await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=5,
            metadata={"waystone": json.dumps({"user": user})},
        )


async def _listed(gateway: Gateway) -> list[dict[str, Any]]:
    await gateway.app[LEDGER].flush()
    return await gateway.app[LEDGER].run_in_db(lambda con: list_alerts(con))


async def _until(gateway: Gateway, check: Any, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """The listed alerts once ``check(listed)`` holds (bounded wait)."""
    async with asyncio.timeout(timeout_s):
        while True:
            listed = await _listed(gateway)
            if check(listed):
                return listed
            await asyncio.sleep(0.02)


async def _day_start(gateway: Gateway) -> str:
    rows = await gateway.rows()
    ts: datetime = rows[0]["ts"]
    return window_start("day", ts.replace(tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_crossing_posts_one_signed_event_the_receiver_verifies(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    receiver, hook = await _receiver(aiohttp_server)
    gateway = await start_gateway(_config(hook.port))
    await _chats(gateway.client(), 3)
    [post] = await receiver.wait_for(1)
    assert post.verified and post.signature is not None
    start = await _day_start(gateway)
    key = f"budget.threshold|user:alice|everyone|daily|cost_usd|day|0.5|{start}"
    event = post.event
    assert event == {
        "id": event_id(key),
        "type": "budget.threshold",
        "at": event["at"],
        "subject": {"kind": "user", "id": "alice"},
        "ruleset": "everyone",
        "rule": "daily",
        "metric": "cost_usd",
        "window": "day",
        "window_start": start,
        "threshold": 0.5,
        "limit": 0.0001,
        "used": 0.000063,
        "text": "user alice reached 50% of rule daily (ruleset everyone): $0.000063 of"
        f" $0.0001 cost_usd in the day window from {start}",
    }
    listed = await _until(gateway, lambda rows: rows[0]["state"] == "delivered")
    assert [(r["id"], r["attempts"], r["last_error"]) for r in listed] == [(event["id"], 1, None)]


async def test_each_threshold_fires_once_and_a_refused_request_fires_nothing_new(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    receiver, hook = await _receiver(aiohttp_server)
    gateway = await start_gateway(_config(hook.port))
    client = gateway.client()
    await _chats(client, 5)  # 21%, 42%, 63%, 84%, 105%
    with pytest.raises(openai.RateLimitError):
        await _chats(client, 1)  # refused: the budget is spent
    await _chats(client, 2, user="bob")  # 42% of bob's: nothing
    posts = await receiver.wait_for(3)
    assert [(e["threshold"], e["used"]) for e in receiver.events()] == [
        (0.5, 0.000063),
        (0.8, 0.000084),
        (1.0, 0.000105),
    ]
    listed = await _until(gateway, lambda rows: all(r["state"] == "delivered" for r in rows))
    assert len(listed) == 3 and all(p.verified for p in posts)


async def test_exactly_once_across_a_restart(start_gateway: Any, aiohttp_server: Any) -> None:
    # A budget of 2e-4: each chat is 10.5% of it.
    receiver, hook = await _receiver(aiohttp_server)
    first = await start_gateway(_config(hook.port, over=0.0002))
    await _chats(first.client(), 5)  # 52.5%: the 50% threshold
    await receiver.wait_for(1)
    await _until(first, lambda rows: rows[0]["state"] == "delivered")
    await first.server.close()  # the daemon stops (cleanup) and starts again on its ledger

    second = await start_gateway(_config(hook.port, over=0.0002))
    await _chats(second.client(), 1)  # 63%: no threshold crossed since the restart
    await second.app[LEDGER].flush()
    assert second.app[DELIVERY].pending == 0
    await _chats(second.client(), 2)  # 84%: the 80% threshold, once
    await receiver.wait_for(2)
    listed = await _until(second, lambda rows: rows[0]["state"] == "delivered")
    assert [e["threshold"] for e in receiver.events()] == [0.5, 0.8]
    assert [(r["event"]["threshold"], r["attempts"]) for r in listed] == [(0.8, 1), (0.5, 1)]
    metrics = second.app[OBSERVER_KEY].metrics.alerts.values
    assert metrics == {("budget.threshold", "queued"): 1, ("budget.threshold", "delivered"): 1}


async def test_an_event_refused_with_500_is_retried_with_the_same_body_until_delivered(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    receiver, hook = await _receiver(aiohttp_server, fail_first=2)
    gateway = await start_gateway(_config(hook.port), alert_retry_s=0.05)
    await _chats(gateway.client(), 3)
    posts = await receiver.wait_for(3)
    assert len({p.body for p in posts}) == 1 and all(p.verified for p in posts)
    listed = await _until(gateway, lambda rows: rows[0]["state"] == "delivered")
    assert [(r["attempts"], r["last_error"]) for r in listed] == [(3, "HTTP 500")]


async def test_an_event_waits_while_the_receiver_is_down_and_goes_when_it_is_up(
    start_gateway: Any,
) -> None:
    with socket.socket() as probe:  # a free port, closed: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = await start_gateway(_config(port), alert_retry_s=0.05)
    await _chats(gateway.client(), 3)
    down = await _until(gateway, lambda rows: rows and rows[0]["attempts"] >= 2)
    assert down[0]["state"] == "retrying"
    assert down[0]["last_error"].startswith("ConnectionRefusedError")
    assert down[0]["next_attempt_at"] is not None

    receiver = Receiver(secret=SECRET)
    runner = web.AppRunner(receiver.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        [post] = await receiver.wait_for(1)
        listed = await _until(gateway, lambda rows: rows[0]["state"] == "delivered")
        assert post.verified and post.event["id"] == listed[0]["id"]
        assert listed[0]["attempts"] >= 3
    finally:
        await runner.cleanup()


async def test_a_slow_receiver_never_holds_a_request(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    receiver, hook = await _receiver(aiohttp_server, hold=True)
    gateway = await start_gateway(_config(hook.port))
    client = gateway.client()
    await _chats(client, 3)  # 63%: the first event, which the receiver holds
    await receiver.wait_for(1)
    assert receiver.holding == 1
    # While the receiver holds its answer, requests run and another event is stored.
    await _chats(client, 1)  # 84%
    await _chats(client, 2, user="bob")  # 42%: no event
    assert receiver.holding == 1 and len(receiver.posts) == 1
    stored = await _until(gateway, lambda rows: len(rows) == 2)
    assert [r["state"] for r in stored] == ["pending", "pending"]
    receiver.release.set()
    await receiver.wait_for(2)
    await _until(gateway, lambda rows: all(r["state"] == "delivered" for r in rows))
    assert [e["threshold"] for e in receiver.events()] == [0.5, 0.8]


async def test_an_unpriced_model_is_reported_once(start_gateway: Any, aiohttp_server: Any) -> None:
    receiver, hook = await _receiver(aiohttp_server)
    gateway = await start_gateway(_config(hook.port))
    for _ in range(2):
        await gateway.client().chat.completions.create(
            model="up/shared-model", messages=[{"role": "user", "content": "hi"}]
        )
    [post] = await receiver.wait_for(1)
    assert post.event["type"] == "model.unpriced"
    assert (post.event["provider"], post.event["model"]) == ("up", "shared-model")
    await _until(gateway, lambda rows: rows[0]["state"] == "delivered")
    assert len(await _listed(gateway)) == 1


async def test_alerts_list_reads_the_same_through_the_daemon_and_the_file(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    receiver, hook = await _receiver(aiohttp_server)
    gateway = await start_gateway(_config(hook.port))
    await _chats(gateway.client(), 3)
    await receiver.wait_for(1)
    await _until(gateway, lambda rows: rows[0]["state"] == "delivered")
    ledger, socket_path = gateway.home / "ledger.duckdb", gateway.home / "admin.sock"
    up = await asyncio.to_thread(
        run_query, "alerts_list", ledger_path=ledger, socket_path=socket_path, since=None
    )
    await gateway.server.close()
    assert up == run_local("alerts_list", ledger, since=None)
    assert [row["state"] for row in up] == ["delivered"]


async def test_a_spike_posts_one_spike_detected_per_subject_and_window(
    start_gateway: Any, aiohttp_server: Any
) -> None:
    """A ``flag`` spike rule with no history (``test_spike``'s newbie): the window holds
    3 requests at the 4th, which is flagged, and so are the 5th and 6th; one event."""
    receiver, hook = await _receiver(aiohttp_server)
    gateway = await start_gateway(_config(hook.port, over=1.0, extra=SPIKE))
    await _chats(gateway.client(), 6, user="newbie")
    [post] = await receiver.wait_for(1)
    event = post.event
    assert post.verified and event["type"] == "spike.detected"
    assert (event["subject"], event["ruleset"], event["rule"]) == (
        {"kind": "user", "id": "newbie"},
        "watch",
        "runaway",
    )
    assert (event["metric"], event["window"], event["current"], event["baseline"]) == (
        "requests",
        "1h",
        3,
        0,
    )
    flagged = await gateway.rows("SELECT flagged FROM requests ORDER BY ts")
    assert [r["flagged"] for r in flagged] == [False] * 3 + [True] * 3
    await _until(gateway, lambda rows: [r["state"] for r in rows] == ["delivered"])
    await asyncio.sleep(0.2)  # a second event, were one made, would be posted by now
    assert len(receiver.posts) == 1
