"""Users, groups and links as traffic names them (SPEC §4)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from daemon.state import CONFIG
from tests.integration.conftest import Gateway

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def _chat(
    gateway: Gateway,
    identity: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    as_object: bool = False,
) -> int:
    body: dict[str, Any] = dict(CHAT)
    if identity is not None:
        body["metadata"] = {"waystone": identity if as_object else json.dumps(identity)}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "v1/chat/completions", json=body, headers=headers or {}) as resp,
    ):
        await resp.read()
        return resp.status


async def test_user_and_group_link_and_user_only_counts_only_for_the_user(gateway: Gateway) -> None:
    assert await _chat(gateway, {"user": "alice", "group": "acme"}) == 200
    assert await _chat(gateway, {"user": "alice"}) == 200
    assert await _chat(gateway, {"group": "acme"}) == 200
    rows = await gateway.rows()
    assert [(r["user_id"], r["group_id"]) for r in rows] == [
        ("alice", "acme"),
        ("alice", None),
        (None, "acme"),
    ]
    links = await gateway.rows("SELECT user_id, group_id FROM links")
    assert links == [{"user_id": "alice", "group_id": "acme"}]


async def test_inline_metadata_merges_key_by_key_and_first_seen_is_kept(gateway: Gateway) -> None:
    await _chat(
        gateway,
        {"user": {"id": "bob", "metadata": {"tier": "free", "region": "eu"}}},
        as_object=True,
    )
    await _chat(gateway, {"user": {"id": "bob", "metadata": {"tier": "pro"}}})
    [user] = await gateway.rows(
        "SELECT id, metadata, first_seen <= last_seen AS ordered FROM users"
    )
    assert (user["id"], json.loads(user["metadata"]), user["ordered"]) == (
        "bob",
        {"tier": "pro", "region": "eu"},
        True,
    )


async def test_identity_headers_work_and_conflicts_are_refused(gateway: Gateway) -> None:
    assert (
        await _chat(gateway, headers={"X-Waystone-User": "hank", "X-Waystone-Group": "team-h"})
        == 200
    )
    assert await _chat(gateway, {"user": "ivy"}, headers={"X-Waystone-User": "jack"}) == 400
    rows = await gateway.rows()
    assert [(r["user_id"], r["group_id"], r["status"]) for r in rows] == [
        ("hank", "team-h", 200),
        (None, None, 400),
    ]


async def test_identify_creates_updates_and_links(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            gateway.url + "api/identify",
            json={"user": {"id": "kim", "metadata": {"tier": "free"}}, "group": "labs"},
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"user": "kim", "group": "labs"}
        async with http.post(
            gateway.url + "api/identify", json={"user": {"id": "kim", "metadata": {"seat": 3}}}
        ) as resp:
            assert await resp.json() == {"user": "kim", "group": None}
        async with http.post(gateway.url + "api/identify", json={"user": ""}) as resp:
            assert resp.status == 400
    users = await gateway.rows("SELECT id, metadata FROM users")
    assert [(u["id"], json.loads(u["metadata"])) for u in users] == [
        ("kim", {"tier": "free", "seat": 3})
    ]
    assert await gateway.rows("SELECT id FROM groups") == [{"id": "labs"}]
    assert await gateway.rows("SELECT user_id, group_id FROM links") == [
        {"user_id": "kim", "group_id": "labs"}
    ]
    assert await gateway.rows("SELECT count(*) AS n FROM requests") == [{"n": 0}]


# --- who can name what rules read ([server] request_metadata) ---------------------------

FREE_TIER = """
[users.paid]
metadata = { tier = "pro" }
[rules.downgrade-o3]
model = "o3"
action = "change_model"
to = "up/o3-mini"
[rulesets.free-tier]
when = "user.tier != pro"
rules = ["downgrade-o3"]
"""


async def _o3_rulesets(gateway: Gateway, user: dict[str, Any]) -> str:
    """The rulesets that applied to an o3 chat naming ``user`` inline."""
    body = {**CHAT, "model": "o3", "metadata": {"waystone": json.dumps({"user": user})}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "v1/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        return resp.headers["x-waystone-rulesets"]


async def _identify(gateway: Gateway, body: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(gateway.url + "api/identify", json=body) as resp,
    ):
        assert resp.status == 200


async def test_merged_request_metadata_lets_an_undeclared_user_claim_a_tier(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(FREE_TIER)
    assert await _o3_rulesets(gateway, {"id": "mallory", "metadata": {"tier": "pro"}}) == ""
    assert await _o3_rulesets(gateway, {"id": "dave"}) == "free-tier"


async def test_ignored_request_metadata_is_neither_merged_nor_read_by_rules(
    start_gateway: Any,
) -> None:
    gateway = await start_gateway(FREE_TIER + '[server]\nrequest_metadata = "ignore"\n')
    mallory = {"id": "mallory", "metadata": {"tier": "pro"}}
    assert await _o3_rulesets(gateway, mallory) == "free-tier"
    await _identify(gateway, {"user": {"id": "eve", "metadata": {"tier": "pro"}}})
    assert await _o3_rulesets(gateway, {"id": "eve"}) == "free-tier"
    assert await _o3_rulesets(gateway, {"id": "paid", "metadata": {"tier": "free"}}) == ""
    users = await gateway.rows("SELECT id, metadata FROM users ORDER BY id")
    assert [(u["id"], json.loads(u["metadata"] or "{}")) for u in users] == [
        ("eve", {}),
        ("mallory", {}),
        ("paid", {}),
    ]


async def test_switching_to_ignore_drops_metadata_merged_before(start_gateway: Any) -> None:
    gateway = await start_gateway(FREE_TIER, watch_interval_s=0.02)
    assert await _o3_rulesets(gateway, {"id": "mallory", "metadata": {"tier": "pro"}}) == ""
    path = gateway.home / "config.toml"
    path.write_text(path.read_text() + '\n[server]\nrequest_metadata = "ignore"\n')
    for _ in range(100):
        if gateway.app[CONFIG].current.config.server.request_metadata == "ignore":
            break
        await asyncio.sleep(0.02)
    assert await _o3_rulesets(gateway, {"id": "mallory"}) == "free-tier"
