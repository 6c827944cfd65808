"""Usage over a time span, read from the daily rollup where it can and the raw rows where it must.

A report covers ``[since, until)`` (naive UTC; either end may be open).  The whole UTC
days inside it come from ``usage_daily`` (a few rows per user, model and day) plus the
last few seconds of rows the writer has not folded into it yet, and only the partial
first and last day come from ``requests``.  Rows are appended in
time order, so DuckDB's zone maps on ``ts`` skip everything outside those edges and a
report costs about the same on ten million rows as on ten thousand.  Both sources
yield the same columns with the same meaning, so the answer is exactly that of one
GROUP BY over the raw rows (a test holds the two side by side).

Rules of the rollup that the raw side mirrors: every row counts as a request; a
row that used tokens and has no cost counts in ``unpriced`` (``UNPRICED``), a
NULL ``cost_usd`` adds nothing; ''
in a key column means "none" and reads back as NULL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from waystone_cli.core.errors import UsageError

if TYPE_CHECKING:
    from waystone_cli.ledger.dialect import Connection

DIMENSIONS = ("user", "group", "model", "provider")
METRICS = ("cost", "tokens", "requests")
BUCKETS = ("hour", "day")

#: The SQL expression of each dimension over a source's (normalised) columns.
DIMENSION_SQL = {
    "user": "user_id",
    "group": "group_id",
    "provider": "provider",
    "model": "CASE WHEN provider IS NULL THEN model ELSE provider || '/' || model END",
}

#: ORDER BY expression of each metric over an aggregated row.
METRIC_SQL = {
    # A row with no priced request has an unknown cost: it sorts last, not as $0.
    "cost": "CASE WHEN unpriced_requests = requests THEN NULL ELSE cost_usd END DESC NULLS LAST",
    "tokens": "total_tokens DESC",
    "requests": "requests DESC",
}

#: The aggregate columns every report returns, over a source.
MEASURES_SQL = """
    sum(requests)::BIGINT AS requests,
    sum(input_tokens)::BIGINT AS input_tokens,
    sum(output_tokens)::BIGINT AS output_tokens,
    (sum(input_tokens) + sum(output_tokens))::BIGINT AS total_tokens,
    sum(cost_usd) AS cost_usd,
    sum(unpriced)::BIGINT AS unpriced_requests,
    sum(cached_tokens)::BIGINT AS cached_tokens,
    sum(cache_write_tokens)::BIGINT AS cache_write_tokens
"""


#: A row is unpriced when it used tokens and has no cost.  The daemon's ``priced`` says
#: the same of the rows it writes; this also reads right the older rows, where a refused
#: request's NULL cost counted as unpriced.
UNPRICED = "(cost_usd IS NULL AND input_tokens + output_tokens > 0)"


@dataclass(frozen=True)
class Span:
    """``[since, until)`` in naive UTC; None leaves that end open."""

    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_params(cls, since: str | None = None, until: str | None = None) -> Span:
        span = cls(_parse(since, "since"), _parse(until, "until"))
        if span.since is not None and span.until is not None and span.since >= span.until:
            raise UsageError("--since must be earlier than --until")
        return span

    def full_days(self) -> tuple[date | None, date | None]:
        """The first whole day inside the span and the first day after the last one."""
        first = None
        if self.since is not None:
            first = self.since.date()
            if self.since.time() != time(0):
                first += timedelta(days=1)
        end = self.until.date() if self.until is not None else None
        return first, end

    def has_full_days(self) -> bool:
        first, end = self.full_days()
        return first is None or end is None or first < end

    def edges(self) -> list[tuple[datetime | None, datetime | None]]:
        """The partial-day pieces of the span that the rollup cannot answer."""
        if not self.has_full_days():
            return [(self.since, self.until)]  # no whole day at all: read it raw
        first, end = self.full_days()
        pieces: list[tuple[datetime | None, datetime | None]] = []
        if self.since is not None and first is not None and self.since < _midnight(first):
            pieces.append((self.since, _midnight(first)))
        if self.until is not None and end is not None and _midnight(end) < self.until:
            pieces.append((_midnight(end), self.until))
        return pieces


@dataclass(frozen=True)
class Filters:
    """Restrict a report to one user, group, model (``provider/model`` or bare) or
    provider, and to flagged requests (``usage top --flagged``)."""

    user: str | None = None
    group: str | None = None
    model: str | None = None
    provider: str | None = None
    flagged: bool = False


def source_sql(
    span: Span,
    filters: Filters,
    bucket: str | None = None,
    *,
    folded: int | None = None,
    cache_writes: bool = False,
) -> tuple[str, list[Any]]:
    """A subquery with one row per usage fragment inside the span, and its parameters.

    Columns: ``bucket`` (the hour or day start, when asked), ``user_id``, ``group_id``,
    ``provider``, ``model`` (NULL for none) and ``requests``, ``input_tokens``,
    ``output_tokens``, ``cached_tokens``, ``cache_write_tokens``, ``cost_usd`` (0 for
    unpriced), ``unpriced``, in that order in every part (they are joined by UNION ALL).  Hour buckets need
    the raw rows, so they skip the rollup.  ``folded`` is the ledger's fold mark
    (``folded_seq``): the rows the writer appended after it are not in the rollup yet,
    so they are read raw for the whole days too.  It is passed as a value, not a
    subquery, so DuckDB skips the older row groups by their zone maps.
    ``cache_write_tokens`` is read only when ``cache_writes`` says the ledger has it
    (``has_cache_writes``), else 0: a ledger from before it, opened read-only, is not
    migrated, and a query that never reads the column need not ask.
    """
    parts: list[str] = []
    params: list[Any] = []
    writes = _CACHE_WRITES if cache_writes else _NO_CACHE_WRITES
    if bucket == "hour" or filters.flagged:
        # The rollup does not count flagged rows; they are few, and the filter skips
        # every row group that holds none by its zone map.
        return _raw_part(span.since, span.until, filters, bucket, writes=writes)
    if span.has_full_days():
        sql, p = _rollup_part(span, filters, bucket, writes)
        parts.append(sql)
        params += p
    if span.has_full_days() and folded is not None:
        first, end = span.full_days()
        lo = None if first is None else _midnight(first)
        hi = None if end is None else _midnight(end)
        sql, p = _raw_part(lo, hi, filters, bucket, after_seq=folded, writes=writes)
        parts.append(sql)
        params += p
    for lo, hi in span.edges():
        sql, p = _raw_part(lo, hi, filters, bucket, writes=writes)
        parts.append(sql)
        params += p
    return "\n    UNION ALL\n".join(parts), params


_CACHE_WRITES = "cache_write_tokens"
_NO_CACHE_WRITES = "0::BIGINT AS cache_write_tokens"


def _rollup_part(
    span: Span, filters: Filters, bucket: str | None, writes: str
) -> tuple[str, list[Any]]:
    first, end = span.full_days()
    where, params = _filter_sql(filters, "NULLIF(provider, '')")
    if first is not None:
        where.append("day >= ?")
        params.append(first)
    if end is not None:
        where.append("day < ?")
        params.append(end)
    select_bucket = "day::TIMESTAMP AS bucket, " if bucket else ""
    sql = f"""
    SELECT {select_bucket}NULLIF(user_id, '') AS user_id, NULLIF(group_id, '') AS group_id,
           NULLIF(provider, '') AS provider, NULLIF(model, '') AS model,
           requests, input_tokens, output_tokens, cached_tokens, {writes},
           cost_usd::DECIMAL(38, 10) AS cost_usd, unpriced
    FROM usage_daily {_where(where)}"""
    return sql, params


def _raw_part(
    lo: datetime | None,
    hi: datetime | None,
    filters: Filters,
    bucket: str | None,
    after_seq: int | None = None,
    *,
    writes: str,
) -> tuple[str, list[Any]]:
    where, params = _filter_sql(filters, "NULLIF(provider, '')")
    if after_seq is not None:
        where.append("seq > ?")
        params.append(after_seq)
    if lo is not None:
        where.append("ts >= ?")
        params.append(lo)
    if hi is not None:
        where.append("ts < ?")
        params.append(hi)
    select_bucket = f"date_trunc('{bucket}', ts) AS bucket, " if bucket else ""
    sql = f"""
    SELECT {select_bucket}NULLIF(user_id, '') AS user_id, NULLIF(group_id, '') AS group_id,
           NULLIF(provider, '') AS provider, NULLIF(model, '') AS model,
           1 AS requests, input_tokens, output_tokens, cached_tokens, {writes},
           COALESCE(cost_usd, 0)::DECIMAL(38, 10) AS cost_usd,
           {UNPRICED}::INTEGER::BIGINT AS unpriced
    FROM requests {_where(where)}"""
    return sql, params


def _filter_sql(filters: Filters, provider_sql: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if filters.user is not None:
        where.append("user_id = ?")
        params.append(filters.user)
    if filters.group is not None:
        where.append("group_id = ?")
        params.append(filters.group)
    if filters.provider is not None:
        where.append("provider = ?")
        params.append(filters.provider)
    if filters.model is not None:
        where.append(f"(model = ? OR {provider_sql} || '/' || model = ?)")
        params += [filters.model, filters.model]
    if filters.flagged:
        where.append("flagged")
    return where, params


def _where(conditions: list[str]) -> str:
    return "WHERE " + " AND ".join(conditions) if conditions else ""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0))


def _parse(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid --{name} time {text!r}") from None
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def fold_mark(con: Connection) -> int | None:
    """The ledger's ``folded_seq`` (see ``ledger.rollup``), for ``source_sql``; None for
    a ledger from before folding, opened read-only and so not migrated; None on
    Postgres, whose writers never fold (every batch goes into the rollup at once)."""
    import duckdb

    from waystone_cli.ledger.dialect import dialect_of

    if dialect_of(con).postgres:
        return None
    try:
        row = con.execute("SELECT max(folded_seq) FROM rollup_fold").fetchone()
    except duckdb.CatalogException:
        return None
    return None if row is None or row[0] is None else int(row[0])


def has_cache_writes(con: Connection) -> bool:
    """Whether the ledger has ``cache_write_tokens`` (``m008_cache_write_tokens``), for
    ``source_sql``: a ledger from before it, opened read-only, is not migrated."""
    return _has_column(con, "cache_write_tokens")


def has_flagged(con: Connection) -> bool:
    """Whether the ledger has ``flagged`` (``m009_flagged``); see ``has_cache_writes``."""
    return _has_column(con, "flagged")


def _has_column(con: Connection, name: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'requests' "
        "AND column_name = ? AND table_catalog = current_database()",
        [name],
    ).fetchone()
    return bool(row and row[0])
