"""Opening the ledger file: read-write (the daemon, migrations) or read-only (the CLI);
and the threads that work on it: how many DuckDB may use, the writer's CPU priority."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.migrations import check_known, migrate

# The ledger writer thread's nice value (``lower_priority``): request handling wins
# the CPU over batch writes.
WRITER_NICE = 3


def open_readwrite(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the ledger; the caller closes it.

    The ledger holds captured prompts: a folder it creates is its owner's only, and the
    file and its WAL are made readable by their owner only.  DuckDB creates a new WAL
    after each checkpoint with the process's umask, which the daemon sets to match.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as err:
        raise WaystoneError(f"cannot open the ledger {path}: {err}") from err
    try:
        con.execute("SET TimeZone = 'UTC'")
        _fit_threads(con)
        migrate(con)
        _owner_only(path)
    except BaseException:
        con.close()  # a ledger refused (newer schema) is not left open and locked
        raise
    return con


def _owner_only(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        with suppress(FileNotFoundError):
            file.chmod(0o600)


def _fit_threads(con: duckdb.DuckDBPyConnection) -> None:
    """As many DuckDB threads as cores this process may run on.

    DuckDB counts the machine's cores; a daemon pinned to one (``taskset -c 0``, as the
    proxy benchmark runs it) then pays for threads that only take turns on that core:
    CPU on every ledger batch.  Unpinned, this is DuckDB's own default.
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
        check_known(con)
        con.execute("SET TimeZone = 'UTC'")
        _fit_threads(con)
        yield con
    finally:
        con.close()


def lower_priority() -> None:
    """Give the calling thread (the writer's) a lower CPU priority than the event loop's.

    DuckDB runs a batch without the GIL, so on a saturated core the scheduler splits the
    core evenly between it and the event loop for the batch's 10-20 ms, and requests in
    flight take twice as long: that was the gateway's tail latency.  At ``WRITER_NICE``
    the loop keeps about two thirds of the core meanwhile.  Linux sets the nice value
    per thread; elsewhere (or without permission) nothing changes.
    """
    with suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
