"""Exporting ledger rows through DuckDB's own writers (``COPY … TO``).

The file is written by whichever process holds the ledger (the CLI on a read-only file,
or the daemon behind its admin socket), so ``out`` must be an absolute path both can
reach.  Rows come out in the order they were recorded, which is time order; DuckDB keeps
insertion order, so no sort (and no sort memory) is needed.  ``json`` writes one object
per line (newline-delimited JSON), the form that tools reading large exports expect.

One ``COPY`` reports no progress, so a big export is cut into ranges of ``rowid`` (the
order rows were appended in): ``export_plan`` counts the rows and gives the ``rowid``
bounds, and the caller exports one range at a time and joins the parts.

An export holds captured usage (users, models, errors): it is written into a private
folder beside ``out`` (``staged``), made readable by its owner only, and then moved into
place in one step, so no other user ever sees it readable and a reader never sees half a
file.  An existing file is only replaced when the caller says so (``overwrite``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from waystone_cli.core.errors import UsageError
from waystone_cli.ledger.spans import Span

FORMATS = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet", "json": "FORMAT json"}


def _selection(
    since: str | None, until: str | None, user: str | None, group: str | None
) -> tuple[list[str], list[Any]]:
    span = Span.from_params(since, until)
    conditions = {
        "ts >= ?": span.since,
        "ts < ?": span.until,
        "user_id = ?": user,
        "group_id = ?": group,
    }
    where = [sql for sql, value in conditions.items() if value is not None]
    return where, [value for value in conditions.values() if value is not None]


def export_plan(
    con: duckdb.DuckDBPyConnection,
    since: str | None = None,
    until: str | None = None,
    user: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """How many rows an export selects, and the ``rowid`` range they lie in."""
    where, params = _selection(since, until, user, group)
    clause = "WHERE " + " AND ".join(where) if where else ""
    sql = f"SELECT count(*), min(rowid), max(rowid) FROM requests {clause}"
    rows, first, last = con.execute(sql, params).fetchone() or (0, None, None)
    return {"rows": rows, "first_rowid": first, "last_rowid": last}


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
) -> dict[str, Any]:
    """Write the rows of ``[since, until)`` (of one user or group, of the ``rowids``
    range ``[first, last)`` when given) to ``out``; returns the row count."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    target = Path(out)
    if not target.is_absolute():
        raise UsageError(f"the export path must be absolute: {out}")
    where, params = _selection(since, until, user, group)
    if rowids is not None:
        where.append("rowid >= ? AND rowid < ?")
        params += rowids
    clause = "WHERE " + " AND ".join(where) if where else ""
    options = FORMATS[format] if header else FORMATS[format].replace("true", "false")
    sql = f"COPY (SELECT * FROM requests {clause}) TO ? ({options})"
    with staged(target, overwrite=overwrite) as path:
        try:
            row = con.execute(sql, [*params, str(path)]).fetchone()
        except duckdb.IOException as err:
            raise UsageError(f"cannot write {out}: {err}") from err
    return {"rows": row[0] if row else 0, "path": out, "format": format}


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
