"""Rebuilding the usage counters from the ledger, so a restart never resets a budget.

``counter_rows`` sums the ledger per (user, group, minute) in one GROUP BY, in the shape
``core.counters.UsageCounters.load`` takes.  Only the last ``FINE`` (two hours) is kept
per minute; older usage is summed per hour and placed on the hour's last minute, so a
busy month rebuilds into at most 24 × 31 buckets per entity instead of 44,640 (a big
ledger would otherwise take minutes and gigabytes to load).  A rolling window's old edge
then counts the whole hour it falls in: it errs towards blocking, by at most one hour
of usage.  Calendar boundaries (whole hours in every zone with a whole-hour offset)
stay exact.  A request counts when it was forwarded
(live counters charge it at settle, whatever its outcome); requests refused before
forwarding (``NOT_FORWARDED``) count only if they somehow carry usage, e.g. an answer
that an output check blocked after the provider had been paid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from waystone_cli.core.counters import COST_SCALE, KEEP

FINE = timedelta(hours=2)
NOT_FORWARDED = ("blocked", "rate_limited", "invalid_request", "unauthorized", "not_found")

_SQL = f"""
SELECT user_id, group_id,
       CASE WHEN ts >= ? THEN epoch_ms(ts) // 60000
            ELSE epoch_ms(date_trunc('hour', ts)) // 60000 + 59 END AS minute,
       count(*) AS requests,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       CAST(coalesce(sum(cost_usd), 0) * {COST_SCALE} AS HUGEINT) AS cost_units
FROM requests
WHERE ts >= ?
  AND (outcome NOT IN ({", ".join(f"'{o}'" for o in NOT_FORWARDED)})
       OR input_tokens > 0 OR output_tokens > 0 OR cost_usd > 0)
  {{entity}}
GROUP BY ALL
ORDER BY minute
"""


def counters_since(now: datetime | None = None, keep: timedelta = KEEP) -> datetime:
    """How far back counters need the ledger: ``keep`` (32 days, or the longest window)."""
    return (now or datetime.now(UTC)) - max(keep, KEEP)


def counter_rows(
    con: duckdb.DuckDBPyConnection,
    since: datetime | str,
    user_id: str | None = None,
    group_id: str | None = None,
    now: datetime | str | None = None,
) -> list[list[Any]]:
    """``[user_id, group_id, epoch minute, requests, input, output, cost units]`` rows.

    ``user_id``/``group_id`` narrow it to rows naming that user or that group (what
    ``rules explain`` needs); cost units are 1e-10 USD, exact integers.
    """
    start = _naive_utc(since)
    fine_since = _naive_utc(now if now is not None else datetime.now(UTC)) - FINE
    params: list[Any] = [fine_since, start]
    clauses = []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if group_id is not None:
        clauses.append("group_id = ?")
        params.append(group_id)
    entity = f"AND ({' OR '.join(clauses)})" if clauses else ""
    rows = con.execute(_SQL.format(entity=entity), params).fetchall()
    return [list(row) for row in rows]


def _naive_utc(moment: datetime | str) -> datetime:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


QUERIES = {"counter_rows": counter_rows}
