"""Retention: deleting the rows whose ``retain`` rule has run out.

A row carries the ``retain_days`` the rules gave it when it was recorded; it expires
once ``ts < now - retain_days``.  ``prune`` deletes expired rows with their content and
dataset items and rebuilds the daily rollup from the first affected day, all in one
transaction, so reports never see the rollup and the rows disagree.  The CLI's
``usage prune`` and the daemon's daily task call this same function.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from waystone_cli.ledger.connection import unbounded_memory
from waystone_cli.ledger.dialect import Connection, dialect_of
from waystone_cli.ledger.rollup import rebuild_rollup


def _expired(con: Connection) -> str:
    days = dialect_of(con).days("retain_days")
    return f"retain_days IS NOT NULL AND ts < ?::TIMESTAMP - {days}"


def prune(
    con: Connection, now: datetime | str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Delete (or with ``dry_run`` only count) expired rows; returns what was affected."""
    cutoff = _naive_utc(now)
    with unbounded_memory(con):  # the rollup's rebuild (see there)
        con.begin()
        try:
            con.execute("DROP TABLE IF EXISTS _expired")
            con.execute(
                f"CREATE TEMP TABLE _expired AS SELECT id, ts FROM requests WHERE {_expired(con)}",
                [cutoff],
            )
            counts = _counts(con)
            if not dry_run and counts["requests"]:
                _delete(con, cutoff)
                first_day = con.execute("SELECT min(ts)::DATE FROM _expired").fetchone()
                rebuild_rollup(con, first_day[0] if first_day else None, transaction=False)
            con.execute("DROP TABLE _expired")
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return {**counts, "dry_run": dry_run, "now": cutoff.isoformat()}


def _counts(con: Connection) -> dict[str, Any]:
    row = con.execute(
        """
        SELECT (SELECT count(*) FROM _expired),
               (SELECT count(*) FROM content WHERE request_id IN (SELECT id FROM _expired)),
               (SELECT count(*) FROM dataset_items
                 WHERE request_id IN (SELECT id FROM _expired)),
               (SELECT min(ts) FROM _expired), (SELECT max(ts) FROM _expired)
        """
    ).fetchone()
    assert row is not None
    requests, content, items, first, last = row
    return {
        "requests": requests,
        "content": content,
        "dataset_items": items,
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
    }


def _delete(con: Connection, cutoff: datetime) -> None:
    for table in ("dataset_items", "content"):
        con.execute(f"DELETE FROM {table} WHERE request_id IN (SELECT id FROM _expired)")
    con.execute(f"DELETE FROM requests WHERE {_expired(con)}", [cutoff])


def _naive_utc(now: datetime | str | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(tzinfo=None)
    value = datetime.fromisoformat(now) if isinstance(now, str) else now
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


QUERIES: dict[str, Any] = {"usage_prune": prune}
