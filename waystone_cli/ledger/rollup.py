"""The daily rollup (``usage_daily``): per UTC day, user, group, provider and model.

Reports over long ranges read a few thousand rollup rows instead of millions of
requests.  Rows reach it in one of two ways:

- **Folded** (the daemon's writer): each row gets the next ``requests.seq``, and every
  ``FOLD_EVERY_S`` seconds one batch's transaction also folds every row after
  ``rollup_fold.folded_seq`` into the rollup, in one ``MERGE`` computed by DuckDB from
  ``requests`` (``fold``), and moves ``folded_seq`` on.  Upserting the rollup in every
  batch was half of the writer's CPU (12 ms per 500-row batch); a fold every five
  seconds costs about as much as one of those upserts.  A crash loses nothing: rows
  and the fold mark commit together, and the next fold takes whatever is after the
  mark.  Until then, reports add the unfolded rows to the rollup's days themselves
  (``spans.source_sql``), so they never lag.
- **At once** (``add_to_rollup``, when ``insert_batch`` is given no ``Folding``: one-off
  writes and tests): the batch's sums are upserted in its transaction; such rows have
  no ``seq``.

``rebuild_rollup`` recomputes the rollup from ``requests``.  All three must agree
exactly, so they share one definition:

- every request row counts (blocked and failed ones too; reports filter nothing here);
- the key is the request's UTC day and its ``user_id``, ``group_id``, ``provider`` and
  ``model`` (the model actually used), with '' standing for "none";
- ``cost_usd`` sums the known costs (a NULL cost adds 0); ``unpriced`` counts the rows
  that used tokens at an unknown price (``spans.UNPRICED``): a refused or failed
  request used none, so it is not unpriced even though its cost is NULL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.connection import unbounded_memory
from waystone_cli.ledger.dialect import Connection, dialect_of
from waystone_cli.ledger.spans import UNPRICED

RollupKey = tuple[date, str, str, str, str]

_COST_STEP = Decimal("1e-10")  # the scale of requests.cost_usd, DECIMAL(18, 10)


def quantize_cost(cost: Decimal | None) -> Decimal | None:
    """The cost as the ledger stores it; rounding here keeps Python and SQL sums equal."""
    return None if cost is None else cost.quantize(_COST_STEP, rounding=ROUND_HALF_UP)


def is_unpriced(record: RequestRecord) -> bool:
    """``spans.UNPRICED`` for a record not written yet."""
    return record.cost_usd is None and record.input_tokens + record.output_tokens > 0


@dataclass
class _Sums:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0


def rollup_key(record: RequestRecord) -> RollupKey:
    return (
        record.ts.date(),
        record.user_id or "",
        record.group_id or "",
        record.provider or "",
        record.model or "",
    )


def summarize(records: Iterable[RequestRecord]) -> dict[RollupKey, _Sums]:
    """The batch's contribution to each rollup row."""
    sums: dict[RollupKey, _Sums] = {}
    for r in records:
        s = sums.get(key := rollup_key(r))
        if s is None:
            s = sums[key] = _Sums()
        s.requests += 1
        s.input_tokens += r.input_tokens
        s.output_tokens += r.output_tokens
        s.cached_tokens += r.cached_tokens
        s.cache_write_tokens += r.cache_write_tokens
        s.reasoning_tokens += r.reasoning_tokens
        cost = quantize_cost(r.cost_usd)
        if cost is not None:
            s.cost_usd += cost
        s.unpriced += is_unpriced(r)
    return sums


# An UPDATE of the keys already there, then an INSERT of the others only when the UPDATE
# missed some (a new user, model or day): most batches need the UPDATE alone, about 1 ms
# of CPU cheaper than a MERGE; ``INSERT ... ON CONFLICT`` costs more than either.
_BATCH = """(SELECT UNNEST(?::DATE[]) AS day, UNNEST(?::VARCHAR[]) AS user_id,
              UNNEST(?::VARCHAR[]) AS group_id, UNNEST(?::VARCHAR[]) AS provider,
              UNNEST(?::VARCHAR[]) AS model, UNNEST(?::BIGINT[]) AS requests,
              UNNEST(?::BIGINT[]) AS input_tokens, UNNEST(?::BIGINT[]) AS output_tokens,
              UNNEST(?::BIGINT[]) AS cached_tokens, UNNEST(?::BIGINT[]) AS cache_write_tokens,
              UNNEST(?::BIGINT[]) AS reasoning_tokens,
              UNNEST(?::DECIMAL(38, 10)[]) AS cost_usd, UNNEST(?::BIGINT[]) AS unpriced) AS b"""
_SAME_KEY = """d.day = b.day AND d.user_id = b.user_id AND d.group_id = b.group_id
   AND d.provider = b.provider AND d.model = b.model"""
# A rollup row ``d`` plus the sums ``b`` of the same key.
_ADD_SUMS = """
    requests = d.requests + b.requests,
    input_tokens = d.input_tokens + b.input_tokens,
    output_tokens = d.output_tokens + b.output_tokens,
    cached_tokens = d.cached_tokens + b.cached_tokens,
    cache_write_tokens = d.cache_write_tokens + b.cache_write_tokens,
    reasoning_tokens = d.reasoning_tokens + b.reasoning_tokens,
    cost_usd = d.cost_usd + b.cost_usd,
    unpriced = d.unpriced + b.unpriced"""
_UPDATE = f"""
UPDATE usage_daily AS d SET {_ADD_SUMS}
FROM {_BATCH}
WHERE {_SAME_KEY}
"""
_INSERT_NEW = f"""
INSERT INTO usage_daily BY NAME
SELECT b.* FROM {_BATCH}
WHERE NOT EXISTS (SELECT 1 FROM usage_daily AS d WHERE {_SAME_KEY})
"""


_COLUMNS = """day, user_id, group_id, provider, model, requests, input_tokens, output_tokens,
    cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd, unpriced"""
# Postgres: one statement whatever the keys; concurrent writers of the same keys wait
# for each other's row locks rather than fail, and take them in key order (the sums
# are sorted) so two batches never deadlock.
_UPSERT_PG = f"""
INSERT INTO usage_daily AS d ({_COLUMNS})
SELECT * FROM unnest(?::DATE[], ?::VARCHAR[], ?::VARCHAR[], ?::VARCHAR[], ?::VARCHAR[],
                     ?::BIGINT[], ?::BIGINT[], ?::BIGINT[], ?::BIGINT[], ?::BIGINT[],
                     ?::BIGINT[], ?::DECIMAL(38, 10)[], ?::BIGINT[])
ON CONFLICT (day, user_id, group_id, provider, model) DO UPDATE SET
{_ADD_SUMS.replace("b.", "EXCLUDED.")}
"""


def add_to_rollup(con: Connection, records: Iterable[RequestRecord]) -> None:
    """Upsert the batch into ``usage_daily``; the caller holds the transaction."""
    sums = summarize(records)
    if not sums:
        return
    keys = sorted(sums)
    values = [sums[k] for k in keys]
    params = [
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [k[3] for k in keys],
        [k[4] for k in keys],
        [v.requests for v in values],
        [v.input_tokens for v in values],
        [v.output_tokens for v in values],
        [v.cached_tokens for v in values],
        [v.cache_write_tokens for v in values],
        [v.reasoning_tokens for v in values],
        [format(v.cost_usd, "f") for v in values],
        [v.unpriced for v in values],
    ]
    if dialect_of(con).postgres:
        con.execute(_UPSERT_PG, params)
        return
    row = con.execute(_UPDATE, params).fetchone()
    if row is None or row[0] < len(keys):
        # Rows the UPDATE just touched exist now, so only the new keys go in.
        con.execute(_INSERT_NEW, params)


# The rollup rows of the ``requests`` rows matching ``{where}``: the one definition the
# rebuild and the fold share (and ``summarize`` mirrors in Python).
_AGGREGATE = f"""
SELECT CAST(ts AS DATE) AS day,
       COALESCE(user_id, '') AS user_id, COALESCE(group_id, '') AS group_id,
       COALESCE(provider, '') AS provider, COALESCE(model, '') AS model,
       count(*) AS requests,
       CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
       CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
       CAST(sum(cached_tokens) AS BIGINT) AS cached_tokens,
       CAST(sum(cache_write_tokens) AS BIGINT) AS cache_write_tokens,
       CAST(sum(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
       COALESCE(sum(cost_usd), 0) AS cost_usd,
       count(*) FILTER (WHERE {UNPRICED}) AS unpriced
FROM requests
{{where}}
GROUP BY 1, 2, 3, 4, 5
"""
_REBUILD = f"INSERT INTO usage_daily ({_COLUMNS})" + _AGGREGATE

# Postgres: the batch's sums computed by the server from the rows it just took
# (``PgLedger.copy_batch``), in key order so that concurrent writers take the rollup's
# row locks in one order and never deadlock.
_FROM_BATCH_PG = f"""
INSERT INTO usage_daily AS d ({_COLUMNS})
{_AGGREGATE.replace("FROM requests", "FROM _batch").format(where="")}
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (day, user_id, group_id, provider, model) DO UPDATE SET
{_ADD_SUMS.replace("b.", "EXCLUDED.")}
"""


def add_batch_to_rollup(con: Connection) -> None:
    """Upsert the sums of the batch staged in ``_batch`` into ``usage_daily``, in one
    statement; the caller holds the transaction."""
    con.execute(_FROM_BATCH_PG)


#: The rows reports must add to the rollup: appended by the writer, not folded yet.
UNFOLDED = "seq > (SELECT folded_seq FROM rollup_fold)"

_FOLD = f"""
MERGE INTO usage_daily AS d
USING ({_AGGREGATE.format(where="WHERE " + UNFOLDED)}) AS b
ON {_SAME_KEY}
WHEN MATCHED THEN UPDATE SET {_ADD_SUMS}
WHEN NOT MATCHED THEN INSERT BY NAME
"""
_MARK_FOLDED = """
UPDATE rollup_fold SET folded_seq = (
    SELECT COALESCE(max(seq), rollup_fold.folded_seq) FROM requests
    WHERE seq > rollup_fold.folded_seq
)
"""

# How often the daemon's writer folds (see the module docstring).
FOLD_EVERY_S = 5.0


def fold(con: Connection) -> None:
    """Add every row after ``folded_seq`` to the rollup and mark it folded; the caller
    holds the transaction."""
    con.execute(_FOLD)
    con.execute(_MARK_FOLDED)


class Folding:
    """The writer's side of folding: the next ``seq`` to give and when to fold next.

    Only the daemon's writer numbers rows (it holds the ledger file); ``load`` starts
    after the highest ``seq`` on disk, so numbers only grow.  A failed batch leaves a
    gap in them, which is harmless: only their order matters.
    """

    def __init__(
        self, every_s: float = FOLD_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._next = 1
        self._pending = False  # rows appended since the last fold
        self._due = clock() + every_s

    def load(self, con: Connection) -> None:
        row = con.execute(
            "SELECT COALESCE(max(seq), 0), (SELECT max(folded_seq) FROM rollup_fold) FROM requests"
        ).fetchone()
        last, folded = row if row is not None else (0, 0)
        self._next = max(last, folded or 0) + 1
        if last > (folded or 0):  # left unfolded by a crash: fold with the first batch
            self._pending, self._due = True, self._clock()

    def number(self, count: int) -> int:
        """The first of ``count`` consecutive numbers for a batch's rows."""
        first = self._next
        self._next += count
        self._pending = True
        return first

    def due(self, *, force: bool = False) -> bool:
        return self._pending and (force or self._clock() >= self._due)

    def due_in(self) -> float | None:
        """Seconds until a fold is due; None when there is nothing to fold."""
        if not self._pending:
            return None
        return max(0.0, self._due - self._clock())

    def folded(self) -> None:
        self._pending = False
        self._due = self._clock() + self.every_s

    def postpone(self) -> None:
        """A fold failed: the rows wait (reports still count them) for the next try."""
        self._due = self._clock() + self.every_s


def rebuild_rollup(con: Connection, since: date | None = None, *, transaction: bool = True) -> None:
    """Recompute ``usage_daily`` from ``requests``: every day, or the days from ``since``.

    Runs in its own transaction, outside the ledger's memory bound, unless
    ``transaction=False``: the caller holds the transaction and lifts the bound
    (``connection.unbounded_memory``), e.g. pruning deletes rows and rebuilds in one step.
    """
    if not transaction:
        _rebuild(con, since)
        return
    with unbounded_memory(con):
        con.begin()
        try:
            _rebuild(con, since)
            con.commit()
        except BaseException:
            con.rollback()
            raise


def _rebuild(con: Connection, since: date | None) -> None:
    # Fold first: a row not yet folded from before ``since`` would otherwise be marked
    # folded without ever reaching the rollup.  (Postgres's writers never fold.)
    if not dialect_of(con).postgres:
        fold(con)
    if since is None:
        con.execute("DELETE FROM usage_daily")
        con.execute(_REBUILD.format(where=""))
    else:
        con.execute("DELETE FROM usage_daily WHERE day >= ?", [since])
        # A plain range on ts lets DuckDB skip the older row groups by their zone maps.
        con.execute(_REBUILD.format(where="WHERE ts >= ?::TIMESTAMP"), [since])
