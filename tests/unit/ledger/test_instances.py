"""Heartbeat rows: upserted by name, listed while recent, counted only for the last minute."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from waystone_cli.ledger.instances import Heartbeat, beat, recent_instances

T0 = datetime(2026, 3, 1, 12, 0, 0)


def heartbeat(name: str, seen: datetime, count: int = 0, pid: int = 10) -> Heartbeat:
    return Heartbeat(
        name=name,
        host="h1",
        pid=pid,
        url="http://127.0.0.1:8787/v1",
        started_at=T0,
        last_seen=seen,
        requests_last_minute=count,
    )


def test_a_beat_replaces_the_instances_row(con: duckdb.DuckDBPyConnection) -> None:
    beat(con, heartbeat("eu-1", T0, count=3))
    beat(con, heartbeat("eu-1", T0 + timedelta(seconds=5), count=7, pid=11))
    assert recent_instances(con, now="2026-03-01T12:00:10") == [
        {
            "name": "eu-1",
            "host": "h1",
            "pid": 11,
            "url": "http://127.0.0.1:8787/v1",
            "started_at": "2026-03-01T12:00:00Z",
            "last_seen": "2026-03-01T12:00:05Z",
            "seconds_since_seen": 5,
            "up": True,
            "requests_last_minute": 7,
        }
    ]


def test_old_instances_are_left_out_and_quiet_ones_served_none_lately(
    con: duckdb.DuckDBPyConnection,
) -> None:
    beat(con, heartbeat("a", T0, count=4))
    beat(con, heartbeat("b", T0 + timedelta(minutes=5), count=4))
    beat(con, heartbeat("c", T0 + timedelta(minutes=11), count=4))
    seen = recent_instances(con, now="2026-03-01T12:11:30+00:00")
    assert [
        (i["name"], i["seconds_since_seen"], i["up"], i["requests_last_minute"]) for i in seen
    ] == [("b", 390, False, 0), ("c", 30, False, 4)]


def test_a_ledger_from_before_the_instances_table_lists_none() -> None:
    con = duckdb.connect(":memory:")
    assert recent_instances(con) == []
