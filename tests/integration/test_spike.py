"""The spike trigger and the flag action on real traffic: the real daemon app on
loopback, the openai SDK as its client, the fake provider upstream, history planted in
the ledger before the daemon starts (its counters are rebuilt from it).

The rule under test, for every user::

    spike = { metric = "requests", window = "1h", factor = 2, baseline = "4h", min = 3 }

The baseline averages the three hours before the current one (4h / 1h - 1 = 3
windows); the trigger reads the usage before each request, so the k-th request of the
test sees ``k - 1`` requests in the window.  Planted rows sit 90, 150 and 210 minutes
back, half an hour from any window edge, so the test may run at any moment.  Firing
points, worked out by hand:

- ``newbie``, no history: average 0, so only ``min`` guards it: fires once the window
  holds 3 requests, at request 4.
- ``steady``, 2 + 2 + 2 requests: average 2, bar 2 x 2 = 4: fires at request 5.
- ``riser``, 1 then 3 then 8: average 12 / 3 = 4, bar 8: fires at request 9 (the last
  hour alone would put the bar at 16, the median at 6).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai

from daemon.state import LEDGER
from tests.integration.conftest import Gateway
from tests.servers import RedisServer
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.spikes import rule_spikes
from waystone_cli.ledger.writer import LedgerWriter

SPIKE = """
[rules.runaway]
spike = { metric = "requests", window = "1h", factor = 2, baseline = "4h", min = 3 }
action = "flag"
[rulesets.watch]
when = "always"
rules = ["runaway"]
"""
TRIGGER = {"metric": "requests", "window": "1h", "factor": 2.0, "baseline": "4h", "min": 3.0}
HISTORY = {"newbie": (0, 0, 0), "steady": (2, 2, 2), "riser": (1, 3, 8)}  # 210, 150, 90 min back
SENT = {"newbie": 5, "steady": 6, "riser": 10}
FIRST_FLAGGED = {"newbie": 4, "steady": 5, "riser": 9}


async def plant_history(home: Path, now: datetime) -> None:
    con = open_readwrite(home / "ledger.duckdb")
    writer = LedgerWriter(con)
    await writer.start()
    for user, counts in HISTORY.items():
        for back, n in zip((210, 150, 90), counts, strict=True):
            for i in range(n):
                writer.submit(
                    RequestRecord(
                        id=f"old-{user}-{back}-{i}",
                        ts=(now - timedelta(minutes=back)).replace(tzinfo=None),
                        route="chat/completions",
                        status=200,
                        user_id=user,
                        provider="up",
                        requested_model="gpt-test",
                        model="gpt-test",
                        input_tokens=12,
                        output_tokens=5,
                    )
                )
    await writer.close()
    con.close()


async def chat(client: openai.AsyncOpenAI, user: str) -> str:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "x" * 40}],
        max_tokens=5,
        metadata={"waystone": json.dumps({"user": user})},
    )
    assert raw.status_code == 200  # flag lets the request through
    return raw.headers["x-waystone-request-id"]


async def flags(gateway: Gateway, user: str) -> list[bool]:
    rows = await gateway.rows(
        f"SELECT flagged FROM requests WHERE user_id = '{user}' AND id NOT LIKE 'old-%' ORDER BY ts"
    )
    return [r["flagged"] for r in rows]


async def test_the_trigger_flags_from_the_hand_worked_request(
    start_gateway: Any, waystone_home: Path
) -> None:
    await plant_history(waystone_home, datetime.now(UTC))
    gateway = await start_gateway(SPIKE)
    async with gateway.client() as client:
        for user, n in SENT.items():
            for _ in range(n):
                await chat(client, user)
    for user, n in SENT.items():
        first = FIRST_FLAGGED[user]
        assert await flags(gateway, user) == [k >= first for k in range(1, n + 1)], user


async def test_usage_spikes_replays_the_same_firing_points(
    start_gateway: Any, waystone_home: Path
) -> None:
    start = datetime.now(UTC)
    await plant_history(waystone_home, start)
    gateway = await start_gateway(SPIKE)
    ids: dict[str, list[str]] = {user: [] for user in SENT}
    async with gateway.client() as client:
        for user, n in SENT.items():
            for _ in range(n):
                ids[user].append(await chat(client, user))
    rows = await gateway.rows("SELECT id, user_id FROM requests WHERE flagged ORDER BY ts")
    flagged = {user: [r["id"] for r in rows if r["user_id"] == user] for user in SENT}
    # From the test's start: the planted rows are judged too (the newest ones would
    # have fired), but the daemon was not running then.
    since = start.replace(tzinfo=None).isoformat()
    replayed = await gateway.app[LEDGER].run_in_db(
        lambda con: rule_spikes(con, "runaway", **TRIGGER, since=since)
    )
    for user in SENT:
        mine = [r for r in replayed if r["user"] == user]
        # One line per hour period: the test may straddle an hour, so add them up.
        assert mine[0]["request"] == flagged[user][0] == ids[user][FIRST_FLAGGED[user] - 1]
        assert sum(r["requests"] for r in mine) == len(flagged[user]), user
    steady = next(r for r in replayed if r["user"] == "steady")
    assert (steady["value"], steady["baseline"], steady["factor"]) == (4.0, 2.0, 2.0)
    newbie = next(r for r in replayed if r["user"] == "newbie")
    assert (newbie["value"], newbie["baseline"], newbie["factor"]) == (3.0, 0.0, None)


async def test_a_spike_rule_that_blocks_refuses_from_the_same_request(
    start_gateway: Any, waystone_home: Path
) -> None:
    await plant_history(waystone_home, datetime.now(UTC))
    gateway = await start_gateway(SPIKE.replace('action = "flag"', 'action = "block"'))
    outcomes = []
    async with gateway.client() as client:
        for _ in range(6):
            try:
                await chat(client, "steady")
                outcomes.append(200)
            except openai.RateLimitError as err:
                assert err.response.headers["retry-after"]
                outcomes.append(err.status_code)
    # steady's bar is 4: request 5 sees 4 and is refused; a refused request is not
    # charged, so request 6 sees 4 as well.
    assert outcomes == [200, 200, 200, 200, 429, 429]
    assert await flags(gateway, "steady") == [False] * 6  # blocked, not flagged


async def test_with_counters_in_redis_the_trigger_learns_its_values_one_request_late(
    start_gateway: Any, waystone_home: Path, redis_server: RedisServer
) -> None:
    """Shared counters: ``decide()`` reads the values the last admission sent back, and
    a spike's windows are watched, not limits (``Decision.watched``), so no admission is
    refused as stale for them: each instance sees a spike one request after the ledger's
    hand-worked point (the request after the first one it decides on fresh values)."""
    await plant_history(waystone_home, datetime.now(UTC))
    gateway = await start_gateway(SPIKE + f'[cluster]\nredis_url = "{redis_server.url}"\n')
    async with gateway.client() as client:
        for user, n in SENT.items():
            for _ in range(n + 1):
                await chat(client, user)
    for user, n in SENT.items():
        first = FIRST_FLAGGED[user]
        assert await flags(gateway, user) == [k >= first + 1 for k in range(1, n + 2)], user
