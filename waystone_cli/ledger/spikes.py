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

``rule_spikes`` answers another question with the spike trigger's one definition
(``core.spike.judge``): it replays a ``spike`` rule (``usage spikes --rule NAME``, or
every spike rule of the config) over the ledger request by request, as the daemon saw
them.  At each request, the usage of its user (or group) in the ``window`` before it
and in the ``baseline`` before that, with the counters' rules (whole minutes, so a
window's oldest minute counts in full; only requests that were forwarded, or carry
usage, count).  So it lists the spikes the trigger saw, one line per subject and window
period (``SpikeHit.window_start``) with the first request it fired at.  It cannot see
two things the daemon did: requests in flight (the daemon counts their estimates until
they settle) and ruleset conditions (every user or group is judged).  After a restart
the daemon's counters hold usage older than two hours by the hour (``ledger.counters``),
which can move a firing point by the usage of the hour at a window's old edge.  Its SQL
reads plain rows, the same on DuckDB and Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from statistics import median
from typing import TYPE_CHECKING, Any

from waystone_cli.core.counters import COST_SCALE
from waystone_cli.core.errors import UsageError
from waystone_cli.core.spike import judge, period_start
from waystone_cli.core.windows import WindowError, parse_duration
from waystone_cli.ledger.counters import NOT_FORWARDED
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
    "median is 0 has no baseline and is not judged. factor = value / median. "
    "With spike rules in the config, or --rule NAME, the rules are replayed instead, "
    "request by request, as the daemon's spike trigger saw them (--every and --metric "
    "then come from each rule)."
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


# Every request row of the span and the baseline before it, per subject in time order:
# its time, its value in the metric's exact unit, and whether the counters count it.
_REPLAY_SQL = """
    SELECT {key} AS key, id, ts, {value} AS value,
           (outcome NOT IN ({not_forwarded})
            OR input_tokens > 0 OR output_tokens > 0 OR cost_usd > 0) AS counted,
           outcome NOT IN ('unauthorized', 'invalid_request', 'not_found') AS judged
    FROM requests
    WHERE {key} IS NOT NULL AND ts >= ? {until}
    ORDER BY key, ts, seq NULLS FIRST, id
"""

_REPLAY_VALUE = {
    "cost_usd": f"coalesce(cost_usd, 0) * {COST_SCALE}",  # exact: DECIMAL in, Decimal out
    "tokens": "input_tokens + output_tokens",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "requests": "1",
}


def rule_spikes(
    con: Connection,
    rule: str,
    metric: str,
    window: str,
    factor: float,
    baseline: str,
    min: float = 0.0,
    since: str | None = None,
    until: str | None = None,
    by: str = "user",
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The spikes the trigger ``spike = {metric, window, factor, baseline, min}`` of
    ``rule`` saw in ``[since, until)``: per subject and window period, the first."""
    if by not in ("user", "group") or metric not in _REPLAY_VALUE:
        raise UsageError("spikes: --by user|group, and a spike rule's metric")
    try:
        window_s = parse_duration(window).total_seconds()
        baseline_s = parse_duration(baseline).total_seconds()
    except WindowError as err:
        raise UsageError(str(err)) from None
    span = Span.from_params(since, until)
    start = span.since - timedelta(seconds=baseline_s + 60) if span.since else datetime.min
    sql = _REPLAY_SQL.format(
        key=DIMENSION_SQL[by],
        value=_REPLAY_VALUE[metric],
        not_forwarded=", ".join(f"'{o}'" for o in NOT_FORWARDED),
        until="AND ts < ?" if span.until else "",
    )
    params: list[Any] = [start, *([span.until] if span.until else [])]
    rows = con.execute(sql, params).fetchall()
    scale = COST_SCALE if metric == "cost_usd" else 1
    bounds = (span.since.replace(tzinfo=UTC).timestamp() if span.since else None, window_s)
    hits = []
    for subject_rows in _by_key(rows):
        hits += _replay(subject_rows, bounds, baseline_s, factor, min, scale)
    hits.sort(key=lambda h: (h["at"], h["key"]))
    return [{by: h.pop("key"), "rule": rule, "metric": metric, **h} for h in hits[:limit]]


def _by_key(rows: Sequence[tuple[Any, ...]]) -> Iterable[Sequence[tuple[Any, ...]]]:
    """The rows (sorted by key) of each key in turn."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            yield rows[start:i]
            start = i


def _replay(
    rows: Sequence[tuple[Any, ...]],
    bounds: tuple[float | None, float],
    baseline_s: float,
    factor: float,
    minimum: float,
    scale: int,
) -> list[dict[str, Any]]:
    """One subject's requests in time order, judged as the daemon's counters read them
    (see ``core.counters``: a rolling window starts at the whole minute
    ``(now - window) // 60``)."""
    since_s, window_s = bounds
    windows = baseline_s / window_s - 1
    minutes: list[int] = []  # of the counted rows so far
    sums = [0]  # running totals of their values
    w_at = b_at = 0  # the first counted row inside the window, inside the baseline
    seen: dict[datetime, dict[str, Any]] = {}
    for key, request_id, ts, value, counted, judged in rows:
        now_s = ts.replace(tzinfo=UTC).timestamp()
        w_start, b_start = int((now_s - window_s) // 60), int((now_s - baseline_s) // 60)
        while w_at < len(minutes) and minutes[w_at] < w_start:
            w_at += 1
        while b_at < len(minutes) and minutes[b_at] < b_start:
            b_at += 1
        if judged and (since_s is None or now_s >= since_s):
            # The counters' arithmetic: two usages as floats, then their difference.
            current = _usage(sums[-1] - sums[w_at], scale)
            whole = _usage(sums[-1] - sums[b_at], scale)
            average = judge(current, whole - current, windows, factor, minimum)
            if average is not None:
                period = period_start(now_s, window_s)
                hit = seen.get(period)
                if hit is None:
                    seen[period] = {
                        "key": key,
                        "bucket": period.replace(tzinfo=None).isoformat(),
                        "at": datetime.fromtimestamp(now_s, UTC).replace(tzinfo=None).isoformat(),
                        "request": request_id,
                        "value": round(current, 10),
                        "baseline": round(average, 10),
                        "factor": round(current / average, 2) if average > 0 else None,
                        "requests": 1,
                    }
                else:
                    hit["requests"] += 1
        if counted:
            minutes.append(int(now_s // 60))
            sums.append(sums[-1] + int(value))
    return list(seen.values())


def _usage(total: int, scale: int) -> float:
    """A total as ``core.counters`` reads it: cost units over their scale, counts as floats."""
    return total / scale if scale != 1 else float(total)


def _trunc(value: datetime, every: str) -> datetime:
    value = value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0) if every == "day" else value


QUERIES: dict[str, Any] = {"usage_spikes": spikes, "usage_rule_spikes": rule_spikes}
