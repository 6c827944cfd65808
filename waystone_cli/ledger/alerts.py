"""The alerts outbox in the ledger: the one place its SQL lives.

- ``store(con, events)``: insert-if-absent by id (``INSERT … ON CONFLICT (id) DO
  NOTHING``, the same on DuckDB and Postgres), one transaction; returns the ids that
  were new.  An id already stored (an earlier run, another instance) is not new, so the
  caller does not deliver it a second time: exactly once, whoever saw the crossing.
- ``record_attempts(con, attempts)``: one row per delivery attempt, appended.  No row is
  ever updated: on DuckDB an update through the writer's thread has left the pruning's
  ``CHECKPOINT`` refused after a restart (see ``ledger.instances``), and an append-only
  history also says what each attempt got.
- ``pending(con)``: the events without a delivered attempt, oldest first, with their
  attempt count: the daemon reloads them at start and keeps trying.
- ``recent_keys(con, since)``: the dedupe keys of events made since ``since`` (and of
  every unpriced model, which fires once ever), so the daemon knows what was already
  sent without asking the ledger per request.
- ``list_alerts(con, since)``: ``waystone alerts list``, with each event's state.

Every statement's result is fetched whole before the next: a result left half-read
keeps DuckDB's transaction open on the connection.  Times are naive UTC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from waystone_cli.core.alerts import UNPRICED, AlertEvent
from waystone_cli.ledger.dialect import Connection

T = TypeVar("T")

# Rows go in as one multi-row VALUES statement per chunk: DuckDB's cost is per
# statement, not per row, and the same SQL runs on Postgres.
CHUNK = 200


def _values(columns: int, rows: int) -> str:
    row = "(" + ", ".join(["?"] * columns) + ")"
    return ", ".join([row] * rows)


@dataclass(frozen=True)
class Attempt:
    alert_id: str
    attempt: int  # from 1
    at: datetime  # aware UTC
    status: int | None  # the receiver's HTTP status; None when it did not answer
    error: str | None  # None: delivered
    next_attempt_at: datetime | None  # None: delivered


@dataclass(frozen=True)
class Pending:
    id: str
    type: str
    body: bytes
    attempts: int


def store(con: Connection, events: Sequence[AlertEvent]) -> list[str]:
    """Insert the events not stored yet; the ids that were new."""
    new: list[str] = []
    con.begin()
    try:
        for chunk in _chunks(events):
            sql = (
                "INSERT INTO alerts (id, type, dedupe_key, created_at, body) VALUES "
                f"{_values(5, len(chunk))} ON CONFLICT (id) DO NOTHING RETURNING id"
            )
            params = [
                v for e in chunk for v in (e.id, e.type, e.key, _naive(e.at), e.body.decode())
            ]
            new.extend(r[0] for r in con.execute(sql, params).fetchall())
        con.commit()
    except BaseException:
        con.rollback()
        raise
    return new


def record_attempts(con: Connection, attempts: Sequence[Attempt]) -> None:
    """Append attempts, in one transaction."""
    con.begin()
    try:
        for chunk in _chunks(attempts):
            sql = (
                "INSERT INTO alert_attempts (alert_id, attempt, attempted_at, status, error,"
                f" next_attempt_at) VALUES {_values(6, len(chunk))}"
            )
            params = [
                v
                for a in chunk
                for v in (
                    a.alert_id,
                    a.attempt,
                    _naive(a.at),
                    a.status,
                    a.error,
                    _naive(a.next_attempt_at) if a.next_attempt_at else None,
                )
            ]
            con.execute(sql, params)  # no result to read: nothing is left open
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _chunks(rows: Sequence[T]) -> list[Sequence[T]]:
    return [rows[i : i + CHUNK] for i in range(0, len(rows), CHUNK)]


def pending(con: Connection) -> list[Pending]:
    rows = con.execute(
        """
        SELECT a.id, a.type, a.body, count(t.alert_id)
        FROM alerts a LEFT JOIN alert_attempts t ON t.alert_id = a.id
        WHERE NOT EXISTS (
            SELECT 1 FROM alert_attempts d WHERE d.alert_id = a.id AND d.error IS NULL
        )
        GROUP BY a.id, a.type, a.body, a.created_at
        ORDER BY a.created_at, a.id
        """
    ).fetchall()
    return [
        Pending(id=ident, type=kind, body=body.encode(), attempts=int(count))
        for ident, kind, body, count in rows
    ]


def recent_keys(con: Connection, since: datetime) -> list[str]:
    rows = con.execute(
        "SELECT dedupe_key FROM alerts WHERE created_at >= ? OR type = ?",
        [_naive(since), UNPRICED],
    ).fetchall()
    return [r[0] for r in rows]


def list_alerts(
    con: Connection, since: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """The events made since ``since`` (ISO, UTC), newest first, with their delivery
    state: ``delivered``, ``pending`` (no attempt yet) or ``retrying``."""
    if not _has_alerts(con):  # a ledger written before m010, read-only
        return []
    params: list[Any] = []
    where = ""
    if since is not None:
        where = "WHERE a.created_at >= ?"
        params.append(_naive(datetime.fromisoformat(since)))
    # Correlated subqueries rather than DuckDB's arg_max: the same SQL runs on Postgres.
    rows = con.execute(
        f"""
        SELECT a.id, a.type, a.created_at, a.body,
            (SELECT count(*) FROM alert_attempts t WHERE t.alert_id = a.id),
            (SELECT min(t.attempted_at) FROM alert_attempts t
             WHERE t.alert_id = a.id AND t.error IS NULL),
            (SELECT t.error FROM alert_attempts t
             WHERE t.alert_id = a.id AND t.error IS NOT NULL ORDER BY t.attempt DESC LIMIT 1),
            (SELECT t.next_attempt_at FROM alert_attempts t
             WHERE t.alert_id = a.id ORDER BY t.attempt DESC LIMIT 1)
        FROM alerts a
        {where}
        ORDER BY a.created_at DESC, a.id
        LIMIT ?
        """,
        [*params, limit],
    ).fetchall()
    return [_listed(*row) for row in rows]


def _listed(
    ident: str,
    kind: str,
    created: datetime,
    body: str,
    attempts: int,
    delivered: datetime | None,
    last_error: str | None,
    next_at: datetime | None,
) -> dict[str, Any]:
    payload = json.loads(body)
    state = "delivered" if delivered else "retrying" if attempts else "pending"
    return {
        "id": ident,
        "type": kind,
        "at": _iso(created),
        "subject": payload.get("subject"),
        "text": payload.get("text"),
        "state": state,
        "attempts": int(attempts),
        "last_error": last_error,
        "next_attempt_at": _iso(next_at) if next_at and not delivered else None,
        "delivered_at": _iso(delivered) if delivered else None,
        "event": payload,
    }


def _has_alerts(con: Connection) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"
    ).fetchall()
    return bool(row and row[0][0])


def _naive(at: datetime) -> datetime:
    return at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds") + "Z"


QUERIES = {"alerts_list": list_alerts}
