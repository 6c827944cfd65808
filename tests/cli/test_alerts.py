"""``waystone alerts list`` on a ledger with events, and ``alerts test`` against a real
receiver on loopback (aiohttp, checking the signature)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli
from tests.integration.webhook_receiver import Receiver
from waystone_cli.core.alerts import Crossing, threshold_event
from waystone_cli.core.decision import Limit
from waystone_cli.ledger.alerts import Attempt, record_attempts, store
from waystone_cli.ledger.connection import open_readwrite

T0 = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)
SECRET = "whsec-cli-0123456789"


def _crossing(threshold: float, used: float) -> Crossing:
    limit = Limit(
        ruleset="teams",
        rule="monthly",
        subject="group:acme",
        metric="cost_usd",
        window="month",
        used=used,
        limit=10.0,
    )
    return Crossing(limit, threshold, used)


@pytest.fixture
def ledger(waystone_home: Path) -> None:
    """Two events: 50% delivered at the second attempt, 80% still failing."""
    con = open_readwrite(waystone_home / "ledger.duckdb")
    half = threshold_event(_crossing(0.5, 5.5), T0, T0)
    most = threshold_event(_crossing(0.8, 8.25), T0, T0 + timedelta(hours=2))
    store(con, [half, most])
    for attempt in [
        Attempt(half.id, 1, T0, 503, "HTTP 503", T0 + timedelta(seconds=1)),
        Attempt(half.id, 2, T0 + timedelta(seconds=1), 200, None, None),
        Attempt(
            most.id,
            1,
            T0 + timedelta(hours=2),
            None,
            "ClientConnectorError: refused",
            T0 + timedelta(hours=2, minutes=5),
        ),
    ]:
        record_attempts(con, [attempt])
    con.close()


def test_alerts_list_shows_each_event_with_its_delivery_state(cli: Cli, ledger: None) -> None:
    result = cli("alerts", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.split("\n")
    assert [line.rstrip() for line in lines] == [
        "at                 type               state                                                             attempts   event",
        "─" * 238,
        "2026-11-01 11:00   budget.threshold   retrying (ClientConnectorError: refused), next 2026-11-01 11:05          1   group acme reached 80% of rule monthly (ruleset teams): $8.25 of $10 cost_usd in the month window from 2026-11-01T09:00:00Z",
        "2026-11-01 09:00   budget.threshold   delivered 2026-11-01 09:00                                               2   group acme reached 50% of rule monthly (ruleset teams): $5.5 of $10 cost_usd in the month window from 2026-11-01T09:00:00Z",
        "",
    ]


def test_alerts_list_json_since_keeps_the_newer_event(cli: Cli, ledger: None) -> None:
    result = cli("alerts", "list", "--json", "--since", "2026-11-01T10:00")
    assert result.exit_code == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert {k: v for k, v in row.items() if k != "event"} == {
        "id": row["event"]["id"],
        "type": "budget.threshold",
        "at": "2026-11-01T11:00:00Z",
        "subject": {"kind": "group", "id": "acme"},
        "text": "group acme reached 80% of rule monthly (ruleset teams): $8.25 of $10 cost_usd"
        " in the month window from 2026-11-01T09:00:00Z",
        "state": "retrying",
        "attempts": 1,
        "last_error": "ClientConnectorError: refused",
        "next_attempt_at": "2026-11-01T11:05:00Z",
        "delivered_at": None,
    }


def test_alerts_list_on_an_empty_ledger(cli: Cli) -> None:
    result = cli("alerts", "list")
    assert (result.exit_code, result.stdout) == (0, "No alert events.\n")


async def test_alerts_test_posts_a_signed_event_the_receiver_verifies(
    cli: Cli, write_config: Any, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(secret=SECRET)
    server = await aiohttp_server(receiver.app())
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    write_config(
        f'[alerts]\nwebhook = "http://127.0.0.1:{server.port}/hook"\nsecret = "env:HOOK_SECRET"\n'
    )
    result = await asyncio.to_thread(cli, "alerts", "test")
    assert result.exit_code == 0, result.stderr
    [post] = receiver.posts
    assert post.verified and post.event["type"] == "waystone.test"
    assert result.stdout == (
        f"test event {post.event['id']} delivered to [redacted] (HTTP 204, signed)\n"
    )


async def test_alerts_test_says_why_the_receiver_refused(
    cli: Cli, write_config: Any, aiohttp_server: Any
) -> None:
    receiver = Receiver(secret=SECRET)  # the event goes unsigned: the receiver says 401
    server = await aiohttp_server(receiver.app())
    write_config(f'[alerts]\nwebhook = "http://127.0.0.1:{server.port}/hook"\n')
    result = await asyncio.to_thread(cli, "alerts", "test")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: test event not delivered to [redacted]: HTTP 401 (unsigned (no [alerts] secret))"
    )


def test_alerts_test_without_a_webhook_is_a_usage_error(cli: Cli) -> None:
    result = cli("alerts", "test")
    assert result.exit_code == 2
    assert "no [alerts] webhook is configured" in result.stderr
