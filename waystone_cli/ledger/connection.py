"""Opening the ledger file: read-write (the daemon, migrations) or read-only (the CLI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.migrations import migrate


def open_readwrite(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the ledger; the caller closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as err:
        raise WaystoneError(f"cannot open the ledger {path}: {err}") from err
    con.execute("SET TimeZone = 'UTC'")
    _fit_threads(con)
    migrate(con)
    return con


def _fit_threads(con: duckdb.DuckDBPyConnection) -> None:
    """As many DuckDB threads as cores this process may run on.

    DuckDB counts the machine's cores; a daemon pinned to one (``taskset -c 0``, as the
    proxy benchmark runs it) then pays for threads that only take turns on that core:
    about 1 ms of CPU per ledger batch (``bench/ledger_insert.py --per-batch --set
    threads=2``).  Unpinned, this is DuckDB's own default.
    """
    if hasattr(os, "sched_getaffinity"):
        con.execute(f"SET threads = {max(1, len(os.sched_getaffinity(0)))}")


@contextmanager
def open_readonly(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection; a ledger that does not exist yet reads as empty."""
    if path.exists():
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException as err:
            raise WaystoneError(
                f"the ledger {path} is locked by another process and no daemon answers "
                f"on the admin socket: {err}"
            ) from err
    else:
        con = duckdb.connect(":memory:")
        migrate(con)
    try:
        con.execute("SET TimeZone = 'UTC'")
        _fit_threads(con)
        yield con
    finally:
        con.close()
