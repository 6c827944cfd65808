"""The usage report queries behind ``waystone usage``: top, show, timeline, status.

Every function takes a DuckDB connection and JSON-able keyword parameters (times are
ISO strings in UTC) and returns JSON-able data, so the CLI gets the same answer whether
it runs the query on the file or the daemon runs it behind its admin socket.  Usage is
read through ``spans.source_sql`` (the daily rollup for whole days, raw rows for the
partial edges).

A usage row is ``{<dimension>: key, requests, input_tokens, output_tokens,
cached_tokens, cache_write_tokens, total_tokens, cost_usd, unpriced_requests}``, where
``cached_tokens`` (cache reads) and ``cache_write_tokens`` are parts of ``input_tokens``.  ``cost_usd`` sums the priced requests
only; the cost of the ``unpriced_requests`` is unknown, so it is never counted as 0:
when every request of a row is unpriced, ``cost_usd`` is null.  Unpriced means tokens
used at an unknown price (``spans.UNPRICED``): refused and failed requests used none.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from waystone_cli.core.errors import UsageError
from waystone_cli.ledger import datasets, export, retention, spikes
from waystone_cli.ledger.dialect import Connection
from waystone_cli.ledger.retention import prune
from waystone_cli.ledger.spans import (
    BUCKETS,
    DIMENSION_SQL,
    DIMENSIONS,
    MEASURES_SQL,
    METRIC_SQL,
    METRICS,
    Filters,
    Span,
    fold_mark,
    has_cache_writes,
    has_flagged,
    source_sql,
)

Row = dict[str, Any]
# The columns of ``spans.MEASURES_SQL``, in its order.
MEASURES = (
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_requests",
    "cached_tokens",
    "cache_write_tokens",
)
_NONE = [0] * len(MEASURES)


def usage_row(key_name: str, key: Any, values: tuple[Any, ...] | list[Any]) -> Row:
    """One usage object from ``key`` and the measures in ``MEASURES`` order."""
    (
        requests,
        input_tokens,
        output_tokens,
        total_tokens,
        cost,
        unpriced,
        cached_tokens,
        cache_write_tokens,
    ) = values
    requests, unpriced = int(requests or 0), int(unpriced or 0)
    return {
        key_name: key,
        "requests": requests,
        "input_tokens": int(input_tokens or 0),
        "output_tokens": int(output_tokens or 0),
        "cached_tokens": int(cached_tokens or 0),
        "cache_write_tokens": int(cache_write_tokens or 0),
        "total_tokens": int(total_tokens or 0),
        "cost_usd": None if requests and unpriced == requests else _money(cost),
        "unpriced_requests": unpriced,
    }


def _money(value: Decimal | None) -> float:
    return float(value) if value is not None else 0.0


def _check(value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise UsageError(f"--{name} must be one of {', '.join(allowed)}, not {value!r}")


def top(
    con: Connection,
    by: str = "user",
    metric: str = "cost",
    since: str | None = None,
    until: str | None = None,
    limit: int = 20,
    group: str | None = None,
    user: str | None = None,
    model: str | None = None,
    flagged: bool = False,
) -> Row:
    """The ``limit`` biggest users/groups/models/providers by ``metric``, plus the total,
    of the requests of one user, group or model when given, of the flagged ones only
    with ``flagged`` (a ledger from before ``m009_flagged`` has none)."""
    _check(by, DIMENSIONS, "by")
    _check(metric, METRICS, "metric")
    span = Span.from_params(since, until)
    if flagged and not has_flagged(con):
        return {"rows": [], "entities": 0, "total": _total(_NONE)}
    filters = Filters(user=user, group=group, model=model, flagged=flagged)
    src, params = source_sql(
        span, filters, folded=fold_mark(con), cache_writes=has_cache_writes(con)
    )
    totals = ", ".join(f"sum({m}) OVER ()" for m in MEASURES)
    sql = f"""
        WITH agg AS (
            SELECT {DIMENSION_SQL[by]} AS key, {MEASURES_SQL} FROM ({src}) AS src GROUP BY 1
        )
        SELECT key, {", ".join(MEASURES)}, count(*) OVER (), {totals}
        FROM agg ORDER BY {METRIC_SQL[metric]}, key NULLS LAST LIMIT ?
    """
    result = con.execute(sql, [*params, max(limit, 0)]).fetchall()
    n = len(MEASURES)
    rows = [usage_row(by, r[0], r[1 : 1 + n]) for r in result]
    if not result:
        return {"rows": [], "entities": 0, "total": _total(_NONE)}
    return {"rows": rows, "entities": result[0][1 + n], "total": _total(result[0][2 + n :])}


def _total(values: tuple[Any, ...] | list[Any]) -> Row:
    row = usage_row("total", None, values)
    del row["total"]
    return row


def show(
    con: Connection,
    kind: str,
    id: str,
    since: str | None = None,
    until: str | None = None,
) -> Row:
    """One user's or group's totals, per-model use, groups or members, flagged requests
    (``flagged_requests``) and daily use."""
    _check(kind, ("user", "group"), "kind")
    other = "group" if kind == "user" else "user"
    span = Span.from_params(since, until)
    filters = Filters(user=id) if kind == "user" else Filters(group=id)
    src, params = source_sql(
        span, filters, bucket="day", folded=fold_mark(con), cache_writes=has_cache_writes(con)
    )
    sql = f"""
        SELECT GROUPING(bucket, model_key, other_key) AS level, bucket, model_key, other_key,
               {MEASURES_SQL}
        FROM (SELECT *, {DIMENSION_SQL["model"]} AS model_key,
                     {DIMENSION_SQL[other]} AS other_key FROM ({src}) AS src) AS s
        GROUP BY GROUPING SETS ((), (model_key), (other_key), (bucket))
    """
    levels: dict[str, list[tuple[Any, ...]]] = {"total": [], "model": [], "other": [], "day": []}
    names = {7: "total", 5: "model", 6: "other", 3: "day"}  # GROUPING() bit masks
    for r in con.execute(sql, params).fetchall():
        levels[names[r[0]]].append(r)
    total = levels["total"][0][4:] if levels["total"] else _NONE
    result = usage_row(kind, id, total)
    result["models"] = _ranked([usage_row("model", r[2], r[4:]) for r in levels["model"]], "model")
    members = {r[3]: usage_row(other, r[3], r[4:]) for r in levels["other"]}
    for linked in _linked(con, kind, id):
        members.setdefault(linked, usage_row(other, linked, _NONE))
    result["groups" if kind == "user" else "members"] = _ranked(list(members.values()), other)
    result["flagged_requests"] = _flagged(con, kind, id, span)
    result["daily"] = _daily(levels["day"], span)
    return result


def _flagged(con: Connection, kind: str, id: str, span: Span) -> int:
    """The entity's flagged requests in the span: raw rows, since the rollup does not
    count them; few rows are flagged, and the filter skips the row groups with none."""
    if not has_flagged(con):
        return 0
    where = [f"{'user_id' if kind == 'user' else 'group_id'} = ?", "flagged"]
    params: list[Any] = [id]
    if span.since is not None:
        where.append("ts >= ?")
        params.append(span.since)
    if span.until is not None:
        where.append("ts < ?")
        params.append(span.until)
    row = con.execute(f"SELECT count(*) FROM requests WHERE {' AND '.join(where)}", params)
    found = row.fetchone()
    return int(found[0]) if found else 0


def _ranked(rows: list[Row], key: str) -> list[Row]:
    """Biggest cost first (unknown cost last), then tokens, then by key."""
    return sorted(
        rows,
        key=lambda r: (
            r["cost_usd"] is None,
            -(r["cost_usd"] or 0.0),
            -r["total_tokens"],
            r[key] is None,
            r[key] or "",
        ),
    )


def _linked(con: Connection, kind: str, id: str) -> list[str]:
    if kind == "user":
        sql = "SELECT group_id FROM links WHERE user_id = ? ORDER BY 1"
    else:
        sql = "SELECT user_id FROM links WHERE group_id = ? ORDER BY 1"
    return [r[0] for r in con.execute(sql, [id]).fetchall()]


def _daily(rows: list[tuple[Any, ...]], span: Span) -> list[Row]:
    """Every day from the span's start (or the first active day) to its end, zeros kept."""
    by_day = {r[1].date(): r[4:] for r in rows}
    if not by_day and span.since is None:
        return []
    first = span.since.date() if span.since is not None else min(by_day)
    if span.until is not None:
        last = (span.until - timedelta(microseconds=1)).date()
    else:
        last = max([*by_day, first])
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [usage_row("day", d.isoformat(), by_day.get(d, _NONE)) for d in days]


def timeline(
    con: Connection,
    every: str = "day",
    since: str | None = None,
    until: str | None = None,
    user: str | None = None,
    group: str | None = None,
    model: str | None = None,
) -> list[Row]:
    """Usage per hour or day over the span, every bucket present (zeros included)."""
    _check(every, BUCKETS, "every")
    span = Span.from_params(since, until)
    src, params = source_sql(
        span,
        Filters(user=user, group=group, model=model),
        bucket=every,
        folded=fold_mark(con),
        cache_writes=has_cache_writes(con),
    )
    lo = _trunc(span.since, every) if span.since is not None else None
    hi = _trunc(span.until - timedelta(microseconds=1), every) if span.until is not None else None
    sql = f"""
        WITH agg AS (SELECT bucket, {MEASURES_SQL} FROM ({src}) AS src GROUP BY bucket),
        bounds AS (
            SELECT coalesce(?::TIMESTAMP, min(bucket)) AS lo,
                   coalesce(?::TIMESTAMP, max(bucket)) AS hi FROM agg
        ),
        series AS (
            SELECT g.bucket
            FROM bounds, generate_series(bounds.lo, bounds.hi, INTERVAL '1 {every}') AS g(bucket)
        )
        SELECT series.bucket, {", ".join(MEASURES)}
        FROM series LEFT JOIN agg USING (bucket) ORDER BY series.bucket
    """
    result = con.execute(sql, [*params, lo, hi]).fetchall()
    return [usage_row("bucket", r[0].isoformat(), r[1:]) for r in result]


def _trunc(value: datetime, every: str) -> datetime:
    value = value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0) if every == "day" else value


def status(con: Connection) -> Row:
    """How many requests the ledger holds, and the first and last request time."""
    row = con.execute("SELECT count(*), min(ts), max(ts) FROM requests").fetchone()
    count, first, last = row if row is not None else (0, None, None)
    return {
        "requests": count,
        "first": first.isoformat() if first else None,
        "last": last.isoformat() if last else None,
    }


__all__ = ["QUERIES", "prune", "show", "status", "timeline", "top", "usage_row"]

QUERIES: dict[str, Any] = {
    "usage_top": top,
    "usage_show": show,
    "usage_timeline": timeline,
    "usage_status": status,
    **spikes.QUERIES,
    **datasets.QUERIES,
    **export.QUERIES,
    **retention.QUERIES,
}
