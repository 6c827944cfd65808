"""Exporting every ledger row through DuckDB's own writers (``COPY … TO``).

The file is written by whichever process holds the ledger (the CLI on a read-only file,
or the daemon behind its admin socket), so ``out`` must be an absolute path both can
reach.  Rows come out in the order they were recorded, which is time order; DuckDB keeps
insertion order, so no sort (and no sort memory) is needed.  ``json`` writes one object
per line (newline-delimited JSON), the form that tools reading large exports expect.
"""

from __future__ import annotations

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
) -> dict[str, Any]:
    """Write the rows of ``[since, until)`` to ``out``; returns the row count."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if not Path(out).is_absolute():
        raise UsageError(f"the export path must be absolute: {out}")
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
    try:
        row = con.execute(
            f"COPY (SELECT * FROM requests {clause}) TO ? ({FORMATS[format]})", [*params, out]
        ).fetchone()
    except duckdb.IOException as err:
        raise UsageError(f"cannot write {out}: {err}") from err
    return {"rows": row[0] if row else 0, "path": out, "format": format}


QUERIES: dict[str, Any] = {"usage_export": export}
