"""The instances that serve a ledger: each one's heartbeat row, and who was seen recently.

Every daemon upserts its row every few seconds (``daemon.process.heartbeat``), off the request
path, on the ledger writer's thread.  The SQL is the same on DuckDB and Postgres: an
``DELETE`` and ``INSERT`` in one transaction, and a plain ``SELECT``.  Times are naive UTC,
as everywhere in the ledger.

``requests_last_minute`` is what the instance counted itself over the minute before
its ``last_seen``: it needs no scan of ``requests`` (nor its ``instance`` column), and an
instance that stopped beating more than a minute ago served none in the last minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from waystone_cli.ledger.dialect import Connection

# Instances whose last heartbeat is older than this are no longer listed.
RECENT_S = 600
# An instance is up while its last heartbeat is this recent: three beats (five seconds
# apart) missed say it is gone.
UP_WITHIN_S = 15


@dataclass(frozen=True)
class Heartbeat:
    name: str
    host: str
    pid: int
    url: str
    started_at: datetime
    last_seen: datetime
    requests_last_minute: int


_INSERT = """
INSERT INTO instances (name, host, pid, url, started_at, last_seen, requests_last_minute)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def beat(con: Connection, heartbeat: Heartbeat) -> None:
    """The instance's row, replaced: deleted and inserted again in one transaction.

    Not an ``INSERT … ON CONFLICT DO UPDATE`` (nor an ``UPDATE``): on DuckDB an update
    of the row through the writer's thread left the daily pruning's ``CHECKPOINT``
    refused ("other write transactions active") when the daemon restarted on the same
    file; a delete and an insert do not."""
    con.begin()
    try:
        con.execute("DELETE FROM instances WHERE name = ?", [heartbeat.name])
        con.execute(
            _INSERT,
            [
                heartbeat.name,
                heartbeat.host,
                heartbeat.pid,
                heartbeat.url,
                heartbeat.started_at,
                heartbeat.last_seen,
                heartbeat.requests_last_minute,
            ],
        )
        con.commit()
    except BaseException:
        con.rollback()
        raise


def recent_instances(
    con: Connection, within_s: int = RECENT_S, now: str | None = None
) -> list[dict[str, Any]]:
    """The instances seen in the last ``within_s`` seconds, by name; ``now`` (ISO, UTC)
    for tests."""
    at = datetime.fromisoformat(now) if now else _now()
    at = at.replace(tzinfo=None) if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)
    if not _has_instances(con):  # a ledger written before m012, read-only
        return []
    rows = con.execute(
        "SELECT name, host, pid, url, started_at, last_seen, requests_last_minute "
        "FROM instances WHERE last_seen >= ? ORDER BY name",
        [at - timedelta(seconds=within_s)],
    ).fetchall()
    return [
        {
            "name": name,
            "host": host,
            "pid": int(pid),
            "url": url,
            "started_at": _iso(started_at),
            "last_seen": _iso(last_seen),
            "seconds_since_seen": max(0, round((at - last_seen).total_seconds())),
            "up": at - last_seen <= timedelta(seconds=UP_WITHIN_S),
            "requests_last_minute": int(count) if at - last_seen < timedelta(minutes=1) else 0,
        }
        for name, host, pid, url, started_at, last_seen, count in rows
    ]


def _now() -> datetime:
    return datetime.now(UTC)


def _has_instances(con: Connection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'instances'"
    ).fetchone()
    return bool(row and row[0])


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds") + "Z"


QUERIES = {"cluster_instances": recent_instances}
