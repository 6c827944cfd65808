"""Exporting ledger rows through DuckDB's own writers (``COPY … TO``).

The file is written by whichever process holds the ledger (the CLI on a read-only file,
or the daemon behind its admin socket), so ``out`` must be an absolute path both can
reach.  Rows come out in the order they were recorded, which is time order; DuckDB keeps
insertion order, so no sort (and no sort memory) is needed.  ``json`` writes one object
per line (newline-delimited JSON), the form that tools reading large exports expect.

One ``COPY`` reports no progress, so a big export is cut into ranges of ``rowid`` (the
order rows were appended in): ``export_plan`` counts the rows and gives the ``rowid``
bounds, and the caller exports one range at a time and joins the parts.

``cloudevents`` writes one CloudEvents 1.0 JSON object a line per request (SPEC §14):
``id`` the request id, ``source`` the row's ``instance`` when the ledger has that column
and it is set, else the ``source`` the caller gives (the config's ``[cluster] instance``,
else ``waystone``), ``type`` ``waystone.request``, ``subject`` the user, else the group
(null for an anonymous request), ``time`` RFC 3339 in UTC, and ``data`` the usage
(with ``flagged``: a metering service can hold a flagged request for review).

A resumable export (``--cursor``) selects rows by ``seq``, the number the daemon's
writer gives each row in the order it appends them: ``export_plan`` reports the highest
``seq`` when the export starts (``upto_seq``) and the ledger's id (``ledger_id``), and
the export takes the rows after the cursor's ``seq`` up to that one.  Rows written
before the ledger numbered them have no ``seq``; they count as before every numbered
row, so a cursor's first export (``after_seq`` None) includes them.

An export holds captured usage (users, models, errors): it is written into a private
folder beside ``out`` (``staged``), made readable by its owner only, and then moved into
place in one step, so no other user ever sees it readable and a reader never sees half a
file.  An existing file is only replaced when the caller says so (``overwrite``).

A Postgres ledger's rows are first copied, in time order, into a scratch DuckDB file
(``_from_postgres``) and exported from there, in one part.  Its writers (one per
instance) commit out of order, so a number drawn when a row is written cannot be a
cursor: a row with a lower number can still commit after an export went past it.  There
a cursor's position is a transaction id instead: each row records the id of the
transaction that wrote it (``xid``, migration ``m013_commit_xid``), and the plan's
``upto_seq`` is one below the oldest transaction still running when the export starts
(``pg_snapshot_xmin``).  Every transaction below that has ended, so the rows up to it
are all there will ever be; rows of transactions still open are left for the next run.
A long transaction holds the cursor back, never makes it skip a row.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from waystone_cli.core.errors import UsageError
from waystone_cli.ledger.dialect import Connection, dialect_of
from waystone_cli.ledger.spans import Span

FORMATS = {
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet",
    "json": "FORMAT json",
    "cloudevents": "FORMAT json",
}

# The CloudEvents envelope over a request row; ``{source}`` is the source's SQL.
_CLOUDEVENT = """
    '1.0' AS specversion, id, {source} AS source, 'waystone.request' AS type,
    COALESCE(user_id, group_id) AS subject,
    strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS time,
    'application/json' AS datacontenttype,
    {{'user': user_id, 'group': group_id, 'provider': provider, 'model': model,
      'requested_model': requested_model, 'route': route, 'stream': stream,
      'status': status, 'outcome': outcome, 'input_tokens': input_tokens,
      'output_tokens': output_tokens, 'cached_tokens': cached_tokens,
      'reasoning_tokens': reasoning_tokens, 'cost_usd': cost_usd, 'priced': priced,
      'usage_estimated': usage_estimated, 'latency_ms': latency_ms,
      'flagged': {flagged}}} AS data
"""


def _selection(
    since: str | None,
    until: str | None,
    user: str | None,
    group: str | None,
    after_seq: int | None = None,
    upto_seq: int | None = None,
    *,
    postgres: bool = False,
) -> tuple[list[str], list[Any]]:
    span = Span.from_params(since, until)
    conditions = {
        "ts >= ?": span.since,
        "ts < ?": span.until,
        "user_id = ?": user,
        "group_id = ?": group,
    }
    where = [sql for sql, value in conditions.items() if value is not None]
    params: list[Any] = [value for value in conditions.values() if value is not None]
    # A cursor's range (after, upto] of positions: the writer's ``seq`` on DuckDB, the
    # writing transaction's ``xid`` on Postgres (see the module), given as text there.
    position, placeholder = ("xid", "CAST(? AS xid8)") if postgres else ("seq", "?")
    if after_seq is not None:
        where.append(f"{position} > {placeholder}")
        params.append(str(after_seq) if postgres else after_seq)
    if upto_seq is not None:
        # Rows without a position come before every one (see the module).
        upto = f"{position} <= {placeholder}"
        where.append(upto if after_seq is not None else f"({position} IS NULL OR {upto})")
        params.append(str(upto_seq) if postgres else upto_seq)
    return where, params


def ledger_id(con: Connection) -> str | None:
    """This ledger's id, for a cursor to name: it changes with no row (a prune deletes
    rows), only with another ledger (another file or database).  It is drawn from the
    moment the ledger's first migration was applied (and, on Postgres, the database's
    name).  None for a ledger not created yet (read as an empty database in memory)."""
    name = ""
    if dialect_of(con).postgres:
        row = con.execute("SELECT current_database()").fetchone()
        name = str(row[0]) if row else ""
    else:
        on_disk = con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        if not on_disk or not on_disk[0]:
            return None
    row = con.execute("SELECT applied_at FROM _migrations WHERE name = 'm001_requests'").fetchone()
    created = str(row[0]) if row else ""
    if name:
        created = f"{name}:{created}"
    return "ledger-" + hashlib.sha256(created.encode()).hexdigest()[:16]


def _source_sql(con: duckdb.DuckDBPyConnection, source: str) -> tuple[str, list[Any]]:
    if _has_column(con, "instance"):
        return "COALESCE(instance, ?)", [source]
    return "?", [source]


def _has_column(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    # A ledger from before a migration, opened read-only, is not migrated.
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'requests' AND column_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def export_plan(
    con: duckdb.DuckDBPyConnection,
    since: str | None = None,
    until: str | None = None,
    user: str | None = None,
    group: str | None = None,
    after_seq: int | None = None,
    cursor: bool = False,
) -> dict[str, Any]:
    """How many rows an export selects, and the ``rowid`` range they lie in; with a
    ``cursor``, the rows after ``after_seq`` up to the highest ``seq`` now
    (``upto_seq``), and the ledger's id."""
    if dialect_of(con).postgres:
        return _plan_postgres(con, since, until, user, group, after_seq, cursor=cursor)
    plan: dict[str, Any] = {}
    upto = None
    if cursor:
        top = con.execute("SELECT COALESCE(max(seq), 0) FROM requests").fetchone()
        upto = max(int(top[0]) if top else 0, after_seq or 0)
        plan = {"upto_seq": upto, "ledger_id": ledger_id(con)}
    where, params = _selection(since, until, user, group, after_seq, upto)
    clause = "WHERE " + " AND ".join(where) if where else ""
    sql = f"SELECT count(*), min(rowid), max(rowid) FROM requests {clause}"
    rows, first, last = con.execute(sql, params).fetchone() or (0, None, None)
    return {"rows": rows, "first_rowid": first, "last_rowid": last, **plan}


def export(
    con: duckdb.DuckDBPyConnection,
    format: str,
    out: str,
    since: str | None = None,
    until: str | None = None,
    user: str | None = None,
    group: str | None = None,
    rowids: list[int] | None = None,
    header: bool = True,
    overwrite: bool = False,
    after_seq: int | None = None,
    upto_seq: int | None = None,
    source: str = "waystone",
) -> dict[str, Any]:
    """Write the rows of ``[since, until)`` (of one user or group, of the ``rowids``
    range ``[first, last)`` when given, of the ``seq`` range ``(after_seq, upto_seq]``
    for a cursor) to ``out``; returns the row count."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    target = Path(out)
    if not target.is_absolute():
        raise UsageError(f"the export path must be absolute: {out}")
    if dialect_of(con).postgres:
        assert rowids is None, "a Postgres ledger is exported in one part"
        positions = (after_seq, upto_seq)
        with _from_postgres(con, since, until, user, group, positions) as local:
            return export(local, format, out, header=header, overwrite=overwrite, source=source)
    where, params = _selection(since, until, user, group, after_seq, upto_seq)
    if rowids is not None:
        where.append("rowid >= ? AND rowid < ?")
        params += rowids
    clause = "WHERE " + " AND ".join(where) if where else ""
    options = FORMATS[format] if header else FORMATS[format].replace("true", "false")
    columns = "*"
    if format == "cloudevents":
        source_sql, source_params = _source_sql(con, source)
        flagged = "flagged" if _has_column(con, "flagged") else "false"
        columns = _CLOUDEVENT.format(source=source_sql, flagged=flagged)
        params = [*source_params, *params]
    sql = f"COPY (SELECT {columns} FROM requests {clause}) TO ? ({options})"
    with staged(target, overwrite=overwrite) as path:
        try:
            row = con.execute(sql, [*params, str(path)]).fetchone()
        except duckdb.IOException as err:
            raise UsageError(f"cannot write {out}: {err}") from err
    return {"rows": row[0] if row else 0, "path": out, "format": format}


def _plan_postgres(
    con: Any,
    since: str | None,
    until: str | None,
    user: str | None,
    group: str | None,
    after_seq: int | None,
    *,
    cursor: bool,
) -> dict[str, Any]:
    """A Postgres ledger's plan: its rows in one part (no ``rowid`` to cut it by); with a
    cursor, up to the transaction before the oldest one still running (see the module)."""
    plan: dict[str, Any] = {"first_rowid": None, "last_rowid": None}
    upto = None
    if cursor:
        top = con.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
        upto = max(int(top[0]) - 1, after_seq or 0)
        plan.update(upto_seq=upto, ledger_id=ledger_id(con))
    where, params = _selection(
        since, until, user, group, after_seq if cursor else None, upto, postgres=True
    )
    clause = "WHERE " + " AND ".join(where) if where else ""
    row = con.execute(f"SELECT count(*) FROM requests {clause}", params).fetchone()
    return {"rows": int(row[0]) if row else 0, **plan}


# Rows fetched from Postgres at a time while copying an export's rows into DuckDB.
_FETCH_ROWS = 10_000


@contextmanager
def _from_postgres(
    con: Any,
    since: str | None,
    until: str | None,
    user: str | None,
    group: str | None,
    positions: tuple[int | None, int | None] = (None, None),
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The selected rows of a Postgres ledger (with a cursor, those in its range of
    ``positions``) in a scratch DuckDB file, in time order, so that the export runs
    through DuckDB's own writers as on a DuckDB ledger.

    The file is made by the same migrations, so its ``requests`` has the columns of the
    Postgres table (all but ``xid``, which only Postgres has); it lives in a private
    temporary folder, removed at the end (a big export spills there rather than into
    memory)."""
    from waystone_cli.ledger.connection import open_readwrite

    where, params = _selection(since, until, user, group, *positions, postgres=True)
    clause = "WHERE " + " AND ".join(where) if where else ""
    with tempfile.TemporaryDirectory(prefix="waystone-export-") as tmp:
        local = open_readwrite(Path(tmp) / "export.duckdb")
        try:
            local.execute("SELECT * FROM requests LIMIT 0")
            columns = ", ".join(d[0] for d in local.description or ())
            sql = f"SELECT {columns} FROM requests {clause} ORDER BY ts, id"
            result = con.execute(sql, params)
            with local.appender("requests") as appender:
                while rows := result.fetchmany(_FETCH_ROWS):
                    appender.append_rows(rows)
            yield local
        finally:
            local.close()


@contextmanager
def staged(target: Path, *, overwrite: bool) -> Iterator[Path]:
    """A path in a private folder beside ``target`` to write the export to; once written
    it is made the owner's only and moved onto ``target`` in one step."""
    refuse_existing(target, overwrite=overwrite)
    try:
        folder = Path(tempfile.mkdtemp(prefix=".waystone-export-", dir=target.parent))
    except OSError as err:
        raise UsageError(f"cannot write {target}: {err}") from err
    try:
        path = folder / target.name
        yield path
        os.chmod(path, 0o600)
        _move_into_place(path, target, overwrite=overwrite)
    except OSError as err:
        raise UsageError(f"cannot write {target}: {err}") from err
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def refuse_existing(target: Path, *, overwrite: bool) -> None:
    """Refuse to export over a file (the config, a previous export) unless told to."""
    if not overwrite and target.exists():
        raise UsageError(f"{target} exists: give --force to overwrite it")


def _move_into_place(staged: Path, target: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(staged, target)
        return
    try:
        # A hard link never replaces a file that appeared meanwhile.
        os.link(staged, target)
    except FileExistsError:
        refuse_existing(target, overwrite=False)


QUERIES: dict[str, Any] = {"usage_export": export, "usage_export_plan": export_plan}
