"""Opening the ledger file: read-write (the daemon, migrations) or read-only (the CLI)."""

from __future__ import annotations

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
    migrate(con)
    return con


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
        yield con
    finally:
        con.close()
