"""``waystone cluster status``: a real Redis, a DuckDB ledger with heartbeat rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.cli.conftest import Cli
from tests.servers import RedisServer
from waystone_cli.ledger import instances
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.instances import Heartbeat, beat

NOW = datetime(2026, 11, 1, 9, 30, 0)


@pytest.fixture
def heartbeats(waystone_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two instances up, one gone an hour ago (not listed), in the home's ledger."""
    monkeypatch.setattr(instances, "_now", lambda: NOW.replace(tzinfo=UTC))
    ledger = waystone_home / "ledger.duckdb"
    con = open_readwrite(ledger)
    for name, seen, count in [("eu-1-w1", 2, 31), ("eu-1-w2", 20, 7), ("old", 3600, 5)]:
        beat(
            con,
            Heartbeat(
                name=name,
                host="node-a",
                pid=100 + count,
                url="http://0.0.0.0:8787/v1",
                started_at=NOW - timedelta(hours=2),
                last_seen=NOW - timedelta(seconds=seen),
                requests_last_minute=count,
            ),
        )
    con.close()
    return ledger


def instance(name: str, seen: int, up: bool, count: int) -> dict[str, object]:
    return {
        "name": name,
        "host": "node-a",
        "pid": 100 + count,
        "url": "http://0.0.0.0:8787/v1",
        "started_at": "2026-11-01T07:30:00Z",
        "last_seen": (NOW - timedelta(seconds=seen)).isoformat() + "Z",
        "seconds_since_seen": seen,
        "up": up,
        "requests_last_minute": count,
    }


def test_status_json_lists_recent_instances_redis_and_the_rebuild_record(
    cli: Cli, write_config, heartbeats: Path, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.hset(
        "waystone:counters:rebuild",
        mapping={
            "state": "done",
            "instance": "eu-1-w1",
            "started_at": "2026-11-01T07:30:01Z",
            "finished_at": "2026-11-01T07:30:02Z",
        },
    )
    client.close()
    write_config(f'[cluster]\nredis_url = "{redis_server.url}"\n')
    run = cli("cluster", "status", "--json")
    assert (run.exit_code, run.stderr) == (0, "")
    assert json.loads(run.stdout) == {
        "instances": [instance("eu-1-w1", 2, True, 31), instance("eu-1-w2", 20, False, 7)],
        "redis": {"configured": True, "url": redis_server.url, "reachable": True, "error": None},
        "ledger": {
            "backend": "duckdb",
            "location": str(heartbeats),
            "reachable": True,
            "error": None,
        },
        "rebuild": {
            "state": "done",
            "instance": "eu-1-w1",
            "started_at": "2026-11-01T07:30:01Z",
            "finished_at": "2026-11-01T07:30:02Z",
        },
    }


def test_status_table_says_what_is_unreachable(
    cli: Cli, write_config, heartbeats: Path, redis_server: RedisServer
) -> None:
    redis_server.kill()
    write_config(f'[cluster]\nredis_url = "{redis_server.url}"\n')
    run = cli("cluster", "status")
    assert (run.exit_code, run.stderr) == (0, "")
    port = redis_server.url.split(":")[2].split("/")[0]
    assert run.stdout == (
        "instance   host     pid   started            last seen   up    req/min\n"
        "──────────────────────────────────────────────────────────────────────\n"
        "eu-1-w1    node-a   131   2026-11-01 07:30   2 s ago     yes        31\n"
        "eu-1-w2    node-a   107   2026-11-01 07:30   20 s ago    no          7\n"
        f"redis    {redis_server.url}: unreachable (Error 111 connecting to 127.0.0.1:{port}. "
        "Connection refused.)\n"
        f"ledger   duckdb {heartbeats}: reachable\n"
        "rebuild  unknown\n"
    )


def test_status_without_redis_says_n_a(cli: Cli, heartbeats: Path) -> None:
    run = cli("cluster", "status", "--json")
    report = json.loads(run.stdout)
    assert report["redis"] == {"configured": False, "url": None, "reachable": None, "error": None}
    assert report["rebuild"] == {
        "state": "n/a",
        "instance": None,
        "started_at": None,
        "finished_at": None,
    }


def test_status_with_redis_holding_no_rebuild_record_says_none(
    cli: Cli, write_config, waystone_home: Path, redis_server: RedisServer
) -> None:
    write_config(f'[cluster]\nredis_url = "{redis_server.url}"\n')
    report = json.loads(cli("cluster", "status", "--json").stdout)
    assert report["instances"] == []
    assert report["rebuild"]["state"] == "none"
    assert report["redis"]["reachable"] is True


def test_status_names_an_unset_redis_variable(
    cli: Cli, write_config, heartbeats: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAYSTONE_TEST_REDIS", raising=False)
    write_config('[cluster]\nredis_url = "env:WAYSTONE_TEST_REDIS"\n')
    report = json.loads(cli("cluster", "status", "--json").stdout)
    assert report["redis"] == {
        "configured": True,
        "url": "env:WAYSTONE_TEST_REDIS",
        "reachable": False,
        "error": "cluster.redis_url: environment variable WAYSTONE_TEST_REDIS is not set",
    }
