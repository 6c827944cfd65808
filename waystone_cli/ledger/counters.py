"""Rebuilding the usage counters from the ledger, so a restart never resets a budget.

``counter_rows`` sums the ledger per (user, group, minute) in one GROUP BY, in the shape
``core.counters.UsageCounters.load`` takes.  Older usage is summed more coarsely, so
a busy ledger rebuilds quickly and into little memory: per minute for the last two hours
(``FINE``), per hour up to two days back (``HOURLY``), per UTC day before that; a
coarse bucket sits on its span's last minute.  So a rolling window's old edge counts
the whole hour (or, past two days, the whole day) it falls in: it errs towards blocking,
never towards allowing.  Calendar windows in UTC stay exact (their boundaries are
midnights); in another zone a boundary more than two days back may count up to a day
early.

A request counts when it was forwarded (live counters charge it at settle, whatever
its outcome); requests refused before forwarding (``NOT_FORWARDED``) count only if
they somehow carry usage, e.g. an answer that an output check blocked after the
provider had been paid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from waystone_cli.core.counters import COST_SCALE, KEEP
from waystone_cli.ledger.dialect import Connection, Dialect, dialect_of

FINE = timedelta(hours=2)
HOURLY = timedelta(days=2)
NOT_FORWARDED = ("blocked", "rate_limited", "invalid_request", "unauthorized", "not_found")


def _sql(dialect: Dialect, entity: str) -> str:
    minute = dialect.epoch_minute
    return f"""
SELECT user_id, group_id,
       CASE WHEN ts >= ? THEN {minute("ts")}
            WHEN ts >= ? THEN {minute("date_trunc('hour', ts)")} + 59
            ELSE {minute("date_trunc('day', ts)")} + 1439 END AS minute,
       count(*) AS requests,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       CAST(coalesce(sum(cost_usd), 0) * {COST_SCALE} AS {dialect.wide_int}) AS cost_units
FROM requests
WHERE ts >= ?
  AND (outcome NOT IN ({", ".join(f"'{o}'" for o in NOT_FORWARDED)})
       OR input_tokens > 0 OR output_tokens > 0 OR cost_usd > 0)
  {entity}
GROUP BY 1, 2, 3
ORDER BY minute
"""


def counters_since(now: datetime | None = None, keep: timedelta = KEEP) -> datetime:
    """How far back counters need the ledger: ``keep`` (32 days, or the longest window)."""
    return (now or datetime.now(UTC)) - max(keep, KEEP)


def counter_rows(
    con: Connection,
    since: datetime | str,
    user_id: str | None = None,
    group_id: str | None = None,
    now: datetime | str | None = None,
    fine: timedelta = FINE,
) -> list[list[Any]]:
    """``[user_id, group_id, epoch minute, requests, input, output, cost units]`` rows.

    ``user_id``/``group_id`` narrow it to rows naming that user or that group (what
    ``rules explain`` needs); cost units are 1e-10 USD, exact integers.  ``fine`` is how
    far back minutes are kept apart: the whole ``since`` span rebuilds one evicted
    subject as exactly as the live counters held it.
    """
    start = _naive_utc(since)
    moment = _naive_utc(now if now is not None else datetime.now(UTC))
    params: list[Any] = [moment - fine, moment - max(fine, HOURLY), start]
    clauses = []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if group_id is not None:
        clauses.append("group_id = ?")
        params.append(group_id)
    entity = f"AND ({' OR '.join(clauses)})" if clauses else ""
    rows = con.execute(_sql(dialect_of(con), entity), params).fetchall()
    # Postgres sums integers as NUMERIC (DuckDB as HUGEINT): the same whole numbers.
    return [[user, group, *(int(v) for v in values)] for user, group, *values in rows]


def _naive_utc(moment: datetime | str) -> datetime:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


QUERIES = {"counter_rows": counter_rows}
