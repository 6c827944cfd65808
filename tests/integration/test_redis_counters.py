"""Budgets shared exactly through a real redis-server by several daemon instances.

Each instance is a real daemon app on loopback with a home of its own and the same
config; they share one Redis, and either one real Postgres ledger (``ledger="postgres"``,
SPEC §12's deployment) or a DuckDB ledger each.  A chat on up/gpt-test costs 21e-6 USD
and reserves 26e-6 (see test_policy); the cap is worth 5.5 chats, so whatever the
interleaving at most 6 are served.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.app import create_app
from daemon.state import LEDGER, Settings
from tests.integration.conftest import BASE_CONFIG, PROVIDER_KEY
from tests.integration.fake_provider import FakeProvider
from tests.servers import PostgresServer, RedisServer, free_port
from waystone_cli.core.cluster import REBUILD_KEY

PROMPT = "x" * 40
CHAT_COST = 21e-6
CAP = f"""
[users.alice]
metadata = {{ tier = "free" }}
[rules.cap]
usage = {{ metric = "cost_usd", window = "month", over = {5.5 * CHAT_COST!r} }}
action = "block"
[rulesets.capped]
when = "user.tier = free"
rules = ["cap"]
[prices."up/slow-model"]
input = 1.0
output = 2.0
"""


class Cluster:
    """``n`` daemon instances sharing one Redis, each with a home of its own."""

    def __init__(
        self, root: Path, config: str, server: Callable[..., Any], shared: bool = False
    ) -> None:
        self.root = root
        self.config = config
        self.server = server
        self.shared = shared  # one Postgres ledger for all, else a DuckDB file each
        self.apps: list[tuple[web.Application, TestServer]] = []

    def settings(self, i: int) -> Settings:
        home = self.root / f"instance-{i}"
        home.mkdir(exist_ok=True)
        path = home / "config.toml"
        path.write_text(self.config.replace("{instance}", f"i{i}"))
        return Settings(config_path=path, ledger_path=home / "ledger.duckdb", socket_path=None)

    async def start(self, n: int) -> None:
        for i in range(n):
            app = create_app(self.settings(i))
            self.apps.append((app, await self.server(app)))

    async def stop(self) -> None:
        for _, server in self.apps:
            await server.close()
        self.apps = []

    def url(self, i: int) -> str:
        return str(self.apps[i % len(self.apps)][1].make_url("/"))

    async def rows(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for app, _ in self.apps:
            await app[LEDGER].flush()
        for app, _ in self.apps[:1] if self.shared else self.apps:
            writer = app[LEDGER]

            def run(con: Any) -> list[dict[str, Any]]:
                cur = con.execute("SELECT user_id, status, cost_usd FROM requests")
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

            out += await writer.run_in_db(run)
        return out

    async def ready(self, i: int) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.url(i) + "readyz") as resp:
            body: dict[str, Any] = await resp.json()
            return body


async def chat(url: str, user: str = "alice", model: str = "gpt-test", **extra: Any) -> int:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 5,
        "metadata": {"waystone": json.dumps({"user": user})},
        **extra,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "v1/chat/completions", json=body) as resp,
    ):
        await resp.read()
        return resp.status


async def until(condition: Callable[[], Any], what: str, tries: int = 300) -> None:
    for _ in range(tries):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def make_cluster(
    tmp_path: Path,
    aiohttp_server: Any,
    redis_server: RedisServer,
    monkeypatch: Any,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Any]]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", PROVIDER_KEY)
    provider = FakeProvider()
    upstream = await aiohttp_server(provider.app())
    clusters: list[Cluster] = []

    async def make(
        n: int, on_error: str = "block", extra: str = "", ledger: str = "duckdb"
    ) -> Cluster:
        config = BASE_CONFIG.replace("{base_url}", str(upstream.make_url("/v1"))) + CAP + extra
        config += (
            f'\n[cluster]\nredis_url = "{redis_server.url}"\non_redis_error = "{on_error}"\n'
            'instance = "{instance}"\n'
        )
        if ledger == "postgres":
            postgres: PostgresServer = request.getfixturevalue("postgres_server")
            config += f'\n[ledger]\nurl = "{postgres.url}"\n'
        root = tmp_path / f"cluster-{len(clusters)}"
        cluster = Cluster(root, config, aiohttp_server, shared=ledger == "postgres")
        cluster.root.mkdir()
        await cluster.start(n)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        await cluster.stop()


async def _spend_to_the_cap(cluster: Cluster, n: int) -> int:
    """Sequential requests round the instances until alice is refused; how many passed."""
    for i in range(100):
        status = await chat(cluster.url(i % n))
        if status != 200:
            assert status == 429
            return i
    raise AssertionError("never refused")


@pytest.mark.parametrize("ledger", ["postgres", "duckdb"])
@pytest.mark.parametrize("n", [2, 3])
async def test_instances_sharing_redis_serve_at_most_6_of_40_concurrent_requests(
    make_cluster: Callable[..., Any], n: int, ledger: str
) -> None:
    cluster = await make_cluster(n, ledger=ledger)
    statuses = await asyncio.gather(*(chat(cluster.url(i % n)) for i in range(40)))
    assert statuses.count(200) <= 6
    assert statuses.count(200) + statuses.count(429) == 40
    after = await _spend_to_the_cap(cluster, n)
    rows = await cluster.rows()
    assert len(rows) == 40 + after + 1  # every request has its row (in Postgres: one ledger)
    served = [r for r in rows if r["status"] == 200]
    assert len(served) == 6  # settled costs decide: 5 leave room, 6 do not
    assert sum(float(r["cost_usd"]) for r in served) <= 6.5 * CHAT_COST

    await cluster.stop()
    await cluster.start(n)
    for i in range(n):  # a restart of every instance resets nothing
        assert await chat(cluster.url(i)) == 429
        assert await chat(cluster.url(i), user="bob") == 200


@pytest.mark.parametrize("ledger", ["postgres", "duckdb"])
async def test_a_redis_restarted_empty_is_rebuilt_from_the_ledger(
    make_cluster: Callable[..., Any], redis_server: RedisServer, ledger: str
) -> None:
    cluster = await make_cluster(2, ledger=ledger)
    for i in range(4):  # two chats through each instance: 84e-6 of 115.5e-6
        assert await chat(cluster.url(i)) == 200
    await cluster.rows()  # flushed
    redis_server.restart()

    async def rebuilt() -> bool:
        states = [(await cluster.ready(i))["checks"]["counters"] for i in range(2)]
        loads = [s["rebuilds"] for s in states]
        # Per-instance ledgers: each loads its own, at start and again now.  One shared
        # ledger: one load at start and one now, by whichever instance took the lock.
        done = loads == [2, 2] if ledger == "duckdb" else sum(loads) == 2
        return done and all(s["state"] == "redis" for s in states)

    await until(rebuilt, "the ledger loaded into the new Redis")
    import redis.asyncio

    async with redis.asyncio.Redis(port=redis_server.port, decode_responses=True) as client:
        record = await client.hgetall(REBUILD_KEY)  # what `waystone cluster status` shows
    assert record["state"] == "done" and record["instance"] in {"i0", "i1"}
    assert record["started_at"] <= record["finished_at"]
    assert await _spend_to_the_cap(cluster, 2) == 2  # 6 in all, as if nothing happened


async def test_block_mode_refuses_capped_requests_while_redis_is_down_and_serves_others(
    make_cluster: Callable[..., Any], redis_server: RedisServer
) -> None:
    cluster = await make_cluster(2)
    load = [chat(cluster.url(i), user="alice" if i % 2 else "bob") for i in range(20)]
    running = asyncio.gather(*load)
    await asyncio.sleep(0)
    redis_server.kill()
    statuses = await running
    assert set(statuses) <= {200, 429, 503}
    assert await chat(cluster.url(0)) == 503
    assert await chat(cluster.url(1), user="bob") == 200  # no limit applies to bob
    async with aiohttp.ClientSession() as http:
        body = {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"waystone": json.dumps({"user": "alice"})},
        }
        async with http.post(cluster.url(0) + "v1/chat/completions", json=body) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            err = (await resp.json())["error"]
            assert (err["code"], err["type"]) == ("cluster_unavailable", "server_error")
    messages = {
        "model": "mock-small",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_id": "alice"},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(cluster.url(1) + "v1/messages", json=messages) as resp,
    ):
        assert resp.status == 503
        assert (await resp.json())["error"]["type"] == "overloaded_error"  # Anthropic's
    state = (await cluster.ready(0))["checks"]["counters"]
    assert (state["state"], state["redis_reachable"]) == ("unavailable", False)

    redis_server.start()

    async def back() -> bool:
        return await chat(cluster.url(0)) == 200

    await until(back, "alice served again once Redis is back")


async def test_local_mode_counts_in_memory_while_redis_is_down_then_replays_into_redis(
    make_cluster: Callable[..., Any], redis_server: RedisServer
) -> None:
    cluster = await make_cluster(1, on_error="local")
    assert await chat(cluster.url(0)) == 200
    redis_server.kill()
    statuses = await asyncio.gather(*(chat(cluster.url(0)) for _ in range(10)))
    assert 200 in statuses and set(statuses) <= {200, 429}
    state = (await cluster.ready(0))["checks"]["counters"]
    assert (state["state"], state["redis_reachable"]) == ("local", False)
    async with aiohttp.ClientSession() as http, http.get(cluster.url(0) + "metrics") as resp:
        assert "waystone_counters_local 1.0" in await resp.text()
    served = statuses.count(200) + 1

    redis_server.start()  # empty: rebuilt from the ledger, which holds the local usage

    async def back() -> bool:
        return (await cluster.ready(0))["checks"]["counters"]["state"] == "redis"

    await until(back, "counting in Redis again")
    assert served + await _spend_to_the_cap(cluster, 1) == 6


async def test_a_sigkilled_instances_reservations_expire(
    make_cluster: Callable[..., Any], tmp_path: Path, redis_server: RedisServer
) -> None:
    import redis.asyncio

    redis = redis.asyncio.Redis(port=redis_server.port)
    cluster = await make_cluster(1)
    # A second instance in a process of its own, with the same config, then SIGKILLed.
    home = tmp_path / "killed"
    home.mkdir()
    port = free_port()
    config = cluster.config.replace("{instance}", "killed").replace(
        'on_redis_error = "block"', 'on_redis_error = "block"\nreservation_expiry_s = 2'
    )
    (home / "config.toml").write_text(config + f"\n[server]\nport = {port}\n")
    env = {**os.environ, "WAYSTONE_HOME": str(home), "FAKE_PROVIDER_KEY": PROVIDER_KEY}
    with (home / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "waystone_cli.main", "serve"],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:

        async def up() -> bool:
            try:
                return await chat(url, user="bob") == 200
            except aiohttp.ClientError:
                return False

        await until(up, "the second instance serves", tries=600)
        # Five slow streams (26e-6 reserved each, 130e-6 of 115.5e-6) hold alice's budget.
        streams = [
            asyncio.create_task(chat(url, model="slow-model", stream=True)) for _ in range(5)
        ]

        async def reserved() -> bool:
            return int(await redis.hget("ws:p:u:alice", "n") or 0) == 5

        await until(reserved, "the five streams reserved in Redis")
        assert await chat(cluster.url(0)) == 429  # held by the other instance's streams
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        await asyncio.gather(*streams, return_exceptions=True)

        async def freed() -> bool:
            return await chat(cluster.url(0)) == 200

        await until(freed, "the killed instance's reservations expired", tries=400)
    finally:
        await redis.aclose()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_an_rpm_limit_holds_across_instances(make_cluster: Callable[..., Any]) -> None:
    rpm = """
[users.carol]
metadata = { tier = "paid" }
[rules.three-a-minute]
rate = { rpm = 3 }
action = "block"
[rulesets.paid]
when = "user.tier = paid"
rules = ["three-a-minute"]
"""
    cluster = await make_cluster(2, extra=rpm)
    statuses = await asyncio.gather(*(chat(cluster.url(i), user="carol") for i in range(10)))
    assert sorted(statuses) == [200] * 3 + [429] * 7
    assert await chat(cluster.url(0), user="carol") == 429


SPIKE_RULE = """
[rules.runaway]
spike = { metric = "requests", window = "1h", factor = 2, baseline = "4h", min = 100 }
action = "flag"
[rulesets.watch]
when = "always"
rules = ["runaway"]
"""


@pytest.mark.parametrize("extra", ["", SPIKE_RULE], ids=["cap", "cap+spike"])
async def test_the_usage_endpoint_reports_what_every_instance_charged(
    make_cluster: Callable[..., Any], extra: str
) -> None:
    # With a spike rule its windows (1h, 4h) are read from Redis too; it is not a limit.
    cluster = await make_cluster(2, extra=extra)
    for i in range(3):  # 3 chats over both instances: 63e-6 USD, 36 input, 15 output tokens
        assert await chat(cluster.url(i)) == 200
    async with (
        aiohttp.ClientSession() as http,
        http.get(cluster.url(0) + "v1/waystone/usage?user=alice") as resp,
    ):
        body = await resp.json()
    assert body["usage"] == {
        "window": "month",
        "requests": 3,
        "input_tokens": 36,
        "output_tokens": 15,
        "cost_usd": 3 * CHAT_COST,
    }
    [cap] = body["limits"]
    assert (cap["rule"], cap["used"], cap["limit"]) == ("cap", 3 * CHAT_COST, 5.5 * CHAT_COST)


async def test_a_redis_that_stops_answering_is_left_and_gets_the_local_usage_back(
    make_cluster: Callable[..., Any], redis_server: RedisServer
) -> None:
    cluster = await make_cluster(1, on_error="local")
    for _ in range(2):
        assert await chat(cluster.url(0)) == 200
    import redis.asyncio

    async with redis.asyncio.Redis(port=redis_server.port) as client:

        async def settled() -> bool:  # settles are sent after the answer: both arrived
            return await client.zcard("ws:x") == 0

        await until(settled, "both settles in Redis before it stops")
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # hangs without closing the connection
    try:
        for _ in range(2):  # the first waits for the link to give up, then counts locally
            assert await chat(cluster.url(0)) == 200
        state = (await cluster.ready(0))["checks"]["counters"]
        assert (state["state"], state["replay_queue"]) == ("local", 2)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)

    async def back() -> bool:
        return (await cluster.ready(0))["checks"]["counters"]["state"] == "redis"

    await until(back, "counting in Redis again")
    state = (await cluster.ready(0))["checks"]["counters"]
    assert (state["rebuilds"], state["replay_queue"]) == (1, 0)  # kept its data: replayed
    assert await _spend_to_the_cap(cluster, 1) == 2  # 4 + 2: the local usage is in Redis
