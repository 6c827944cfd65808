"""One batch of request rows written in one transaction.

DuckDB's ``executemany`` binds and runs one statement per row (about a thousand rows a
second).  Here a batch is one statement per table.  The ``requests`` rows go through
DuckDB's appender where the client has one (duckdb 2.0+), else as one list parameter
per column turned back into rows by ``UNNEST``, both cheaper than a multi-row
``VALUES``.  Every DML statement costs DuckDB milliseconds of CPU however few its rows, so the writer skips what it can: with a ``KnownEntities`` a batch of known
users and groups writes no entity statement at all (see ``entities``), which leaves the
``requests`` insert and the rollup upsert.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from waystone_cli.core.records import REQUEST_COLUMNS, RequestRecord
from waystone_cli.ledger.dialect import Connection
from waystone_cli.ledger.entities import KnownEntities, upsert_entities, write_plan
from waystone_cli.ledger.postgres import PgLedger
from waystone_cli.ledger.rollup import (
    Folding,
    add_batch_to_rollup,
    add_to_rollup,
    fold,
    quantize_cost,
)

# Rows handed to DuckDB's appender at a time (see ``_insert_requests``): small chunks
# keep the writer from holding the GIL through one long append of the whole batch.
APPEND_CHUNK = 50

# The SQL type of each column of ``requests`` (a unit test checks it against the table).
REQUEST_TYPES: dict[str, str] = {
    "id": "VARCHAR",
    "ts": "TIMESTAMP",
    "user_id": "VARCHAR",
    "group_id": "VARCHAR",
    "provider": "VARCHAR",
    "requested_model": "VARCHAR",
    "model": "VARCHAR",
    "route": "VARCHAR",
    "stream": "BOOLEAN",
    "status": "INTEGER",
    "outcome": "VARCHAR",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cached_tokens": "BIGINT",
    "cache_write_tokens": "BIGINT",
    "reasoning_tokens": "BIGINT",
    "audio_tokens": "BIGINT",
    "cost_usd": "DECIMAL(18, 10)",
    "priced": "BOOLEAN",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "overhead_ms": "DOUBLE",
    "rulesets": "VARCHAR[]",
    "rules": "VARCHAR[]",
    "datasets": "VARCHAR[]",
    "usage_estimated": "BOOLEAN",
    "retain_days": "INTEGER",
    "error": "VARCHAR",
    "flagged": "BOOLEAN",
}


# Columns whose value most rows share, with that value, which is the column's DEFAULT
# (``m001_requests``, ``m005_empty_list_defaults``, ``m008_cache_write_tokens``, ``m009_flagged``; a unit
# test checks them against the table): a batch in which no row differs leaves the column
# out of the insert.  DuckDB's appender converts every value it is given, and a list
# costs more than a scalar.
DEFAULTS: dict[str, Any] = {
    "stream": False,
    "cached_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "audio_tokens": 0,
    "priced": True,
    "ttft_ms": None,
    "rulesets": [],
    "rules": [],
    "datasets": [],
    "usage_estimated": False,
    "retain_days": None,
    "error": None,
    "flagged": False,
}


def _cost(record: RequestRecord) -> str | None:
    # Passed as exact text: the cast to DECIMAL never goes through a float.
    cost = quantize_cost(record.cost_usd)
    return None if cost is None else format(cost, "f")


_CONVERT: dict[str, Callable[[RequestRecord], Any]] = {"cost_usd": _cost}


def insert_sql(*, seq: bool = False, instance: bool = False) -> str:
    """``INSERT INTO requests`` from one list parameter per column (then ``seq`` and
    ``instance`` when asked).

    ``list_zip`` then one ``UNNEST`` is faster than one ``UNNEST`` per column, which
    DuckDB has to line up row by row.
    """
    names = (*REQUEST_COLUMNS, *(("seq",) if seq else ()), *(("instance",) if instance else ()))
    # seq: the writer's numbering; instance: the writer's; neither is a record's field.
    types = {**REQUEST_TYPES, "seq": "BIGINT", "instance": "VARCHAR"}
    columns = ", ".join(names)
    lists = ", ".join(f"?::{types[c]}[]" for c in names)
    return (
        f"INSERT INTO requests ({columns}) SELECT UNNEST(row, recursive := true) "
        f"FROM (SELECT UNNEST(list_zip({lists})) AS row)"
    )


def request_columns(records: Sequence[RequestRecord]) -> list[list[Any]]:
    """The batch as one list per column of ``requests``, in ``REQUEST_COLUMNS`` order."""
    lists: list[list[Any]] = []
    for name in REQUEST_COLUMNS:
        convert = _CONVERT.get(name)
        if convert is None:
            lists.append([getattr(r, name) for r in records])
        else:
            lists.append([convert(r) for r in records])
    return lists


def insert_batch(
    con: Connection,
    records: Sequence[RequestRecord],
    known: KnownEntities | None = None,
    folding: Folding | None = None,
    instance: str | None = None,
) -> None:
    """Write the rows and everything derived from them in one transaction.

    With ``known`` (the writer's), only new, patched or moved entities are written;
    without, every entity and link of the batch is MERGEd.  With ``folding`` (the
    writer's, on DuckDB), the rows are numbered and the rollup is folded when due
    (``rollup``); without (one-off writes, and every Postgres writer: several of them
    share the rollup), the batch is added to the rollup at once.  ``instance`` fills
    the rows' ``instance`` column.
    """
    if not records:
        return
    plan = None if known is None else known.plan(records)
    first_seq = None if folding is None else folding.number(len(records))
    folds = folding is not None and folding.due()
    con.begin()
    try:
        _insert_requests(con, records, first_seq, instance)
        if plan is None:
            upsert_entities(con, records)
        else:
            write_plan(con, plan)
        _insert_content(con, records)
        if isinstance(con, PgLedger):
            add_batch_to_rollup(con)
        elif folding is None:
            add_to_rollup(con, records)
        elif folds:
            fold(con)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    if known is not None and plan is not None:
        known.settle(plan)
    if folds:
        assert folding is not None
        folding.folded()


def fold_now(con: Connection, folding: Folding) -> None:
    """Fold what the writer appended, in a transaction of its own (traffic stopped, or
    the writer is closing)."""
    con.begin()
    try:
        fold(con)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    folding.folded()


def write_entity_times(con: Connection, known: KnownEntities, *, force: bool = False) -> None:
    """Write the ``last_seen`` moves ``known`` holds, if due (or ``force``), in one transaction."""
    plan = known.plan((), force=force)
    if plan.empty:
        if plan.refreshing:
            known.settle(plan)
        return
    con.begin()
    try:
        write_plan(con, plan)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    known.settle(plan)


def _insert_requests(
    con: Connection,
    records: Sequence[RequestRecord],
    first_seq: int | None = None,
    instance: str | None = None,
) -> None:
    columns = request_columns(records)
    seqs = None if first_seq is None else list(range(first_seq, first_seq + len(records)))
    instances = None if instance is None else [instance] * len(records)
    if isinstance(con, PgLedger):
        _copy_requests(con, columns, seqs, instances)
        return
    if not hasattr(con, "appender"):  # duckdb before 2.0
        extra = [c for c in (seqs, instances) if c is not None]
        sql = insert_sql(seq=seqs is not None, instance=instances is not None)
        con.execute(sql, columns + extra)
        return
    # About 2 ms less CPU than the UNNEST insert at any batch size; values convert as
    # bound parameters do (the cost travels as exact text, cast to DECIMAL by DuckDB).
    names, values = [], []
    for name, column in zip(REQUEST_COLUMNS, columns, strict=True):
        if name in DEFAULTS and _all_equal(column, DEFAULTS[name]):
            continue  # the table's DEFAULT fills it in
        names.append(name)
        values.append(column)
    if seqs is not None:
        names.append("seq")
        values.append(seqs)
    if instances is not None:
        names.append("instance")
        values.append(instances)
    rows = list(zip(*values, strict=True))
    with con.appender("requests", columns=names) as appender:
        for start in range(0, len(rows), APPEND_CHUNK):
            appender.append_rows(rows[start : start + APPEND_CHUNK])
            # The conversion holds the GIL: yield it between chunks, so a big batch
            # never stalls the event loop for more than a millisecond or two.
            time.sleep(0)


def _copy_requests(
    con: PgLedger,
    columns: list[list[Any]],
    seqs: list[int] | None,
    instances: list[str] | None,
) -> None:
    """The rows by one binary COPY, leaving out the columns at their DEFAULT (as the
    appender does: less to convert and to send)."""
    names, values = [], []
    for name, column in zip(REQUEST_COLUMNS, columns, strict=True):
        if name in DEFAULTS and _all_equal(column, DEFAULTS[name]):
            continue
        names.append(name)
        values.append(column if name != "cost_usd" else [_decimal(v) for v in column])
    for name, extra in (("seq", seqs), ("instance", instances)):
        if extra is not None:
            names.append(name)
            values.append(extra)
    con.copy_batch(names, list(zip(*values, strict=True)))


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _all_equal(column: list[Any], default: Any) -> bool:
    # ``is``/``==`` by the default's type: 0 == False in Python, and the columns are typed.
    if default is None or default is False or default is True:
        return all(v is default for v in column)
    return all(v == default for v in column)


def _insert_content(con: Connection, records: Sequence[RequestRecord]) -> None:
    kept = [r for r in records if r.capture or r.datasets]
    if kept:
        con.execute(
            "INSERT INTO content SELECT UNNEST(?::VARCHAR[]), UNNEST(?::TIMESTAMP[]), "
            "UNNEST(?::JSON[]), UNNEST(?::VARCHAR[])",
            [
                [r.id for r in kept],
                [r.ts for r in kept],
                [_json_or_none(r.content_input) for r in kept],
                [r.content_output for r in kept],
            ],
        )
    items = [(name, r.id, r.ts) for r in records for name in r.datasets]
    if items:
        con.execute(
            "INSERT INTO dataset_items SELECT UNNEST(?::VARCHAR[]), UNNEST(?::VARCHAR[]), "
            "UNNEST(?::TIMESTAMP[])",
            [[i[0] for i in items], [i[1] for i in items], [i[2] for i in items]],
        )


def _json_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str)


def drop_known(con: Connection, records: Sequence[RequestRecord]) -> list[RequestRecord]:
    """The records whose ids are not in the ledger yet (recovering a spill after a crash)."""
    if not records:
        return []
    known = {
        row[0]
        for row in con.execute(
            "SELECT id FROM requests WHERE id IN (SELECT UNNEST(?::VARCHAR[]))",
            [[r.id for r in records]],
        ).fetchall()
    }
    return [r for r in records if r.id not in known]
