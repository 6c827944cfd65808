"""Bounded memory per end user, through the real daemon: evicted users and groups come
back from the ledger with the same usage, so budgets hold exactly as before.

A chat on up/gpt-test costs 21e-6 USD (see test_policy); the cap is worth 5.5 of them,
so the sixth request is the last one admitted and the seventh is refused.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from daemon.request import eviction
from daemon.request.eviction import evict_idle
from daemon.state import CONFIG, COUNTERS, ENTITIES, LEDGER
from tests.integration.conftest import Gateway
from waystone_cli.core.counters import Subject

CHAT_COST = 21e-6
CAP = f"""
[rules.cap]
usage = {{ metric = "cost_usd", window = "month", over = {5.5 * CHAT_COST!r} }}
action = "block"
[rules.share]
share = {{ of = "credits", max = 0.5 }}
action = "block"
[groups.acme]
credits = {{ usd = {7 * CHAT_COST!r}, window = "day" }}
[rulesets.free]
when = "user.tier = free"
rules = ["cap"]
[rulesets.members]
when = "has group"
rules = ["share"]
"""
WINDOWS = ("1h", "day", "month", "30d")
METRICS = ("cost_usd", "tokens", "requests")


async def chat(gateway: Gateway, identity: dict[str, Any]) -> int:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "x" * 40}],
        "max_tokens": 5,
        "metadata": {"waystone": json.dumps(identity)},
    }
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + "v1/chat/completions", json=body)
        await resp.read()
        return resp.status


def usage(gateway: Gateway, user: str, group: str | None = None) -> list[float]:
    counters, now = gateway.app[COUNTERS], datetime.now(UTC)
    values = []
    for window in WINDOWS:
        for metric in METRICS:
            values.append(counters.usage(Subject("user", user), metric, window, now))
            if group:
                values.append(counters.usage(Subject("group", group), metric, window, now))
                values.append(counters.member_usage(user, group, metric, window, now))
    return values


async def until_refused(gateway: Gateway, identity: dict[str, Any]) -> int:
    """Requests admitted before the first refusal (at most ten are sent)."""
    for admitted in range(10):
        status = await chat(gateway, identity)
        if status != 200:
            assert status == 429
            return admitted
    return 10


async def test_an_evicted_users_budget_is_enforced_exactly_as_if_it_had_never_left(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(CAP)
    app = gateway.app
    # The tier comes only with the first request: after eviction it must come back from
    # the ledger, or the cap no longer applies to alice.
    for user in ("alice", "bob"):
        assert await chat(gateway, {"user": {"id": user, "metadata": {"tier": "free"}}}) == 200
        for _ in range(2):
            assert await chat(gateway, {"user": user}) == 200
    before = usage(gateway, "alice")
    assert before == usage(gateway, "bob")
    dropped = await evict_idle(app, keep_entities=0, keep_series=0)
    assert dropped == 4  # alice and bob: their entities and usage series
    assert not app[ENTITIES].has("user", "alice") and not app[COUNTERS].has(("user", "alice"))

    assert await until_refused(gateway, {"user": "alice"}) == 3  # 3 + 3 = 6 admitted in all
    config = app[CONFIG].current.config
    assert app[ENTITIES].entity("user", "alice", config).metadata == {"tier": "free"}
    assert await until_refused(gateway, {"user": "bob"}) == 3
    assert usage(gateway, "alice") == usage(gateway, "bob")
    assert usage(gateway, "alice") != before


async def test_a_member_evicted_with_its_group_keeps_its_share_of_the_group_credits(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(CAP)
    # The share rule lets a member use half of acme's 7 requests' worth of credits.
    carol = {"user": "carol", "group": "acme"}
    assert [await chat(gateway, carol) for _ in range(2)] == [200, 200]
    before = usage(gateway, "carol", "acme")
    assert await evict_idle(gateway.app, keep_entities=0, keep_series=0) == 5
    assert not gateway.app[COUNTERS].has(("group", "acme"))
    # dave brings acme back first; carol then comes back without it (from her own rows).
    assert await chat(gateway, {"user": "dave", "group": "acme"}) == 200
    counters = gateway.app[COUNTERS]
    assert (counters.has(("group", "acme")), counters.has(("user", "carol"))) == (True, False)
    assert await until_refused(gateway, carol) == 2  # 4 requests (84e-6) reach half of 147e-6
    assert usage(gateway, "carol", "acme") != before
    rows = await gateway.rows("SELECT status FROM requests WHERE user_id = 'carol' ORDER BY ts")
    assert [r["status"] for r in rows] == [200] * 4 + [429]


async def test_the_daemon_holds_a_bounded_number_of_users_whatever_came_before(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await start_gateway()
    for i in range(40):
        assert await chat(gateway, {"user": f"u{i}"}) == 200
    assert await evict_idle(gateway.app, keep_entities=8, keep_series=8) > 0
    assert gateway.app[ENTITIES].count("user") <= 8
    assert gateway.app[COUNTERS].subjects <= 8
    writer = gateway.app[LEDGER]
    reads: list[object] = []
    run_in_db = writer.run_in_db

    def counted(fn: Any) -> Any:
        reads.append(fn)
        return run_in_db(fn)

    monkeypatch.setattr(writer, "run_in_db", counted)
    # A user never seen is not looked up in the ledger: nothing was evicted under its id.
    assert await chat(gateway, {"user": "newcomer"}) == 200
    assert reads == []
    assert await chat(gateway, {"user": "u0"}) == 200  # evicted: read back, once
    assert await chat(gateway, {"user": "u0"}) == 200
    assert len(reads) == 1


async def test_an_entity_named_by_a_request_in_flight_stays_until_its_row_is_written(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway()
    body = {
        "model": "slow-model",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"waystone": json.dumps({"user": {"id": "dan", "metadata": {"tier": "pro"}}})},
    }
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + "v1/chat/completions", json=body)
        assert resp.status == 200
        await resp.content.readany()  # the stream has started: dan's row is not written
        assert await evict_idle(gateway.app, keep_entities=0, keep_series=0) == 0
        assert gateway.app[ENTITIES].has("user", "dan")
        resp.close()  # the client hangs up: the request settles and its row is submitted
    for _ in range(50):  # bounded: the hang-up reaches the daemon within a few loop turns
        if not gateway.app[COUNTERS].reserved(("user", "dan")):
            break
        await asyncio.sleep(0.02)
    assert await evict_idle(gateway.app, keep_entities=0, keep_series=0) == 2
    rows = await gateway.rows("SELECT metadata FROM users WHERE id = 'dan'")
    assert [json.loads(r["metadata"]) for r in rows] == [{"tier": "pro"}]


async def test_at_start_what_is_past_the_bounds_leaves_at_once_and_comes_back_exact(
    start_gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = await start_gateway(CAP)
    for user in ("erin", "frank"):
        assert await chat(gateway, {"user": {"id": user, "metadata": {"tier": "free"}}}) == 200
        for _ in range(4):
            assert await chat(gateway, {"user": user}) == 200
    await gateway.server.close()
    monkeypatch.setattr(eviction, "KEEP_ENTITIES", 1)
    monkeypatch.setattr(eviction, "KEEP_SERIES", 1)
    again = await start_gateway(CAP)
    store = again.app[ENTITIES]
    assert (store.has("user", "erin"), store.has("user", "frank")) == (False, False)
    assert again.app[COUNTERS].subjects <= 1
    assert await until_refused(again, {"user": "erin"}) == 1  # 5 + 1: as without a restart
    assert await until_refused(again, {"user": "frank"}) == 1
