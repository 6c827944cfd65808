"""Spikes: buckets where an entity's usage stands far above its own recent baseline.

The rule (also the ``usage spikes --help`` text, so the two never drift apart):
each user's (or group's) usage is summed per hour or day, hours or days with no use
counting as 0.  A bucket's baseline is the median of the entity's previous
``WINDOW[every]`` buckets (24 hours, or 14 days) and its spread the median absolute
deviation (MAD) of those buckets, scaled by 1.4826 so it matches a standard deviation
on normal data and floored at 10% of the median so perfectly flat history does not make
every wobble a spike.  A bucket is a spike when

    value > median + 5 x spread   and   value >= 2 x median   and   median > 0.

An entity whose median is 0 (idle most of its trailing window) has no baseline and is
not judged.  The factor reported is value / median.  Median and MAD ignore a few
outliers in the window, so an earlier spike does not hide the next one.

DuckDB computes the medians as window functions.  Postgres has no median over a
window frame, so there the dense series is read (a few hundred buckets per entity)
and each bucket is judged in Python (``_judge``), by the same rule; the report tests
run both on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from statistics import median
from typing import TYPE_CHECKING, Any

from waystone_cli.core.errors import UsageError
from waystone_cli.ledger.dialect import dialect_of
from waystone_cli.ledger.spans import DIMENSION_SQL, Filters, Span, fold_mark, source_sql

if TYPE_CHECKING:
    from waystone_cli.ledger.dialect import Connection

WINDOW = {"hour": 24, "day": 14}
K = 5.0
MIN_FACTOR = 2.0
MAD_SCALE = 1.4826
SPREAD_FLOOR = 0.1

VALUE_SQL = {
    "cost": "sum(cost_usd)::DOUBLE PRECISION",
    "tokens": "(sum(input_tokens) + sum(output_tokens))::DOUBLE PRECISION",
    "requests": "sum(requests)::DOUBLE PRECISION",
}

RULE = (
    f"A bucket is a spike when its value > median + {K:g} x max(1.4826 x MAD, 10% of median) "
    f"and >= {MIN_FACTOR:g} x median, where median and MAD (median absolute deviation) are "
    f"taken over the entity's previous {WINDOW['hour']} hours (--every hour) or "
    f"{WINDOW['day']} days (--every day), idle buckets counting as 0. An entity whose "
    "median is 0 has no baseline and is not judged. factor = value / median."
)

# Dense series per entity (idle buckets as 0), then each bucket against the median and
# MAD of the buckets before it; the constants of the rule come in as parameters.
_SQL = """
    WITH agg AS (
        SELECT {key} AS key, bucket, {value} AS value
        FROM ({source}) WHERE {key} IS NOT NULL GROUP BY ALL
    ),
    hi AS (SELECT coalesce(?::TIMESTAMP, max(bucket)) AS hi FROM agg),
    series AS (
        SELECT key, unnest(generate_series(?::TIMESTAMP, hi, INTERVAL 1 {every})) AS bucket
        FROM (SELECT DISTINCT key FROM agg), hi
    ),
    dense AS (
        SELECT key, bucket, coalesce(value, 0) AS value
        FROM series LEFT JOIN agg USING (key, bucket)
    ),
    stats AS (
        SELECT key, bucket, value, median(value) OVER w AS baseline, mad(value) OVER w AS mad
        FROM dense
        WINDOW w AS (PARTITION BY key ORDER BY bucket
                     ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING)
    )
    SELECT key, bucket, value, baseline, value / baseline AS factor FROM stats
    WHERE bucket >= ? AND baseline > 0 AND value >= ? * baseline
      AND value > baseline + ? * greatest(? * mad, ? * baseline)
    ORDER BY value - baseline DESC, key, bucket
    LIMIT ?
"""


# Postgres: the dense series only, in order; ``_judge`` takes it from there.
_DENSE_PG = """
    WITH agg AS (
        SELECT {key} AS key, bucket, {value} AS value
        FROM ({source}) AS src WHERE {key} IS NOT NULL GROUP BY 1, 2
    ),
    hi AS (SELECT coalesce(?::TIMESTAMP, max(bucket)) AS hi FROM agg),
    series AS (
        SELECT k.key, g.bucket
        FROM (SELECT DISTINCT key FROM agg) AS k, hi,
             generate_series(?::TIMESTAMP, hi.hi, INTERVAL '1 {every}') AS g(bucket)
    )
    SELECT key, bucket, coalesce(value, 0) AS value
    FROM series LEFT JOIN agg USING (key, bucket) ORDER BY key, bucket
"""


def _judge(
    series: Iterable[tuple[Any, datetime, float]], first: datetime, window: int
) -> list[tuple[Any, datetime, float, float, float]]:
    """``_SQL``'s rule over a dense series ordered by key and bucket: each bucket from
    ``first`` on against the median and MAD of the ``window`` buckets before it."""
    found = []
    for key, group in groupby(series, key=itemgetter(0)):
        rows = list(group)
        values = [float(r[2]) for r in rows]
        for i, (_, bucket, _) in enumerate(rows):
            before = values[max(0, i - window) : i]
            if bucket < first or not before:
                continue
            baseline = median(before)
            mad = median(abs(v - baseline) for v in before)
            value = values[i]
            spread = max(MAD_SCALE * mad, SPREAD_FLOOR * baseline)
            if baseline > 0 and value >= MIN_FACTOR * baseline and value > baseline + K * spread:
                found.append((key, bucket, value, baseline, value / baseline))
    found.sort(key=lambda r: (-(r[2] - r[3]), r[0], r[1]))
    return found


def spikes(
    con: Connection,
    since: str,
    until: str | None = None,
    every: str = "hour",
    by: str = "user",
    metric: str = "cost",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The spikes inside ``[since, until)``, the largest excess over baseline first."""
    if every not in WINDOW or by not in ("user", "group") or metric not in VALUE_SQL:
        raise UsageError("spikes: --every hour|day, --by user|group, --metric cost|tokens|requests")
    span = Span.from_params(since, until)
    assert span.since is not None
    step = timedelta(hours=1) if every == "hour" else timedelta(days=1)
    first = _trunc(span.since, every)
    lookback = Span(first - WINDOW[every] * step, span.until)
    src, params = source_sql(lookback, Filters(), bucket=every, folded=fold_mark(con))
    hi = _trunc(span.until - timedelta(microseconds=1), every) if span.until else None
    parts = {"source": src, "key": DIMENSION_SQL[by], "value": VALUE_SQL[metric], "every": every}
    if dialect_of(con).postgres:
        series = con.execute(_DENSE_PG.format(**parts), [*params, hi, lookback.since]).fetchall()
        rows = _judge(series, first, WINDOW[every])[:limit]
    else:
        sql = _SQL.format(**parts, window=WINDOW[every])
        args = [*params, hi, lookback.since, first, MIN_FACTOR, K, MAD_SCALE, SPREAD_FLOOR, limit]
        rows = con.execute(sql, args).fetchall()
    return [
        {
            by: key,
            "bucket": bucket.isoformat(),
            "metric": metric,
            "value": round(value, 10),
            "baseline": round(baseline, 10),
            "factor": round(factor, 2),
        }
        for key, bucket, value, baseline, factor in rows
    ]


def _trunc(value: datetime, every: str) -> datetime:
    value = value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0) if every == "day" else value


QUERIES: dict[str, Any] = {"usage_spikes": spikes}
