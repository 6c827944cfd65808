"""Exporting every ledger row through DuckDB's own writers (``COPY … TO``).

The file is written by whichever process holds the ledger (the CLI on a read-only file,
or the daemon behind its admin socket), so ``out`` must be an absolute path both can
reach.  Rows come out in the order they were recorded, which is time order; DuckDB keeps
insertion order, so no sort (and no sort memory) is needed.  ``json`` writes one object
per line (newline-delimited JSON), the form that tools reading large exports expect.

An export holds captured usage (users, models, errors): DuckDB writes it into a private
folder beside ``out``, it is made readable by its owner only, and then moved into place
in one step, so no other user ever sees it readable and a reader never sees half a file.
An existing file is only replaced when the caller says so (``overwrite``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from waystone_cli.core.errors import UsageError
from waystone_cli.ledger.spans import Span

FORMATS = {"csv": "FORMAT csv, HEADER true", "parquet": "FORMAT parquet", "json": "FORMAT json"}


def export(
    con: duckdb.DuckDBPyConnection,
    format: str,
    out: str,
    since: str | None = None,
    until: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the rows of ``[since, until)`` to ``out``; returns the row count."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    target = Path(out)
    if not target.is_absolute():
        raise UsageError(f"the export path must be absolute: {out}")
    refuse_existing(target, overwrite=overwrite)
    span = Span.from_params(since, until)
    where: list[str] = []
    params: list[Any] = []
    if span.since is not None:
        where.append("ts >= ?")
        params.append(span.since)
    if span.until is not None:
        where.append("ts < ?")
        params.append(span.until)
    clause = "WHERE " + " AND ".join(where) if where else ""
    sql = f"COPY (SELECT * FROM requests {clause}) TO ? ({FORMATS[format]})"
    try:
        folder = Path(tempfile.mkdtemp(prefix=".waystone-export-", dir=target.parent))
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err}") from err
    try:
        staged = folder / target.name
        row = con.execute(sql, [*params, str(staged)]).fetchone()
        os.chmod(staged, 0o600)
        _move_into_place(staged, target, overwrite=overwrite)
    except (duckdb.IOException, OSError) as err:
        raise UsageError(f"cannot write {out}: {err}") from err
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"rows": row[0] if row else 0, "path": out, "format": format}


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


QUERIES: dict[str, Any] = {"usage_export": export}
