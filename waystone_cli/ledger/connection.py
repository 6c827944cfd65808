"""Opening the ledger file: read-write (the daemon, migrations) or read-only (the CLI);
the memory a read-write connection keeps; and the threads that work on it: how many
DuckDB may use, the writer's CPU priority."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from waystone_cli.core.config import LedgerConfig
from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.dialect import Connection, dialect_of
from waystone_cli.ledger.migrations import check_known, migrate

# The ledger writer thread's nice value (``lower_priority``): request handling wins
# the CPU over batch writes.
WRITER_NICE = 3

# How much of the write-ahead log is kept before a checkpoint moves it into the file.
CHECKPOINT_THRESHOLD = "4MB"
# Freed memory DuckDB's allocator may keep for reuse after a task.
ALLOCATOR_FLUSH_THRESHOLD = "4MB"


def open_readwrite(
    path: Path, *, memory_limit_mb: int = LedgerConfig.memory_limit_mb
) -> duckdb.DuckDBPyConnection:
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
        bound_memory(con, memory_limit_mb)
    except BaseException:
        con.close()  # a ledger refused (newer schema) is not left open and locked
        raise
    return con


def _owner_only(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        with suppress(FileNotFoundError):
            file.chmod(0o600)


def bound_memory(con: duckdb.DuckDBPyConnection, memory_limit_mb: int) -> None:
    """Bound the memory a long-lived writer keeps as the ledger grows.

    DuckDB's defaults suit a query that runs and exits, not a daemon that appends for
    months.  Its buffer pool evicts nothing below ``memory_limit`` (by default most of
    the machine's RAM), so every block a checkpoint writes or a fold reads stays
    resident and the process grows with the file: the limit bounds that cache
    (sorts and aggregates that need more spill to DuckDB's temporary directory; a
    statement that cannot spill fails, see ``unbounded_memory``).  Rows not yet
    checkpointed live in memory, and a checkpoint builds the new blocks from them, so a
    smaller ``checkpoint_threshold`` makes both the saw-tooth of the log and each
    checkpoint's transient smaller.  And DuckDB's allocator returns freed memory after
    a task only once the task's peak passed ``allocator_flush_threshold``; until then
    ``VmRSS`` counts it although nothing uses it.  The effect is measured by
    ``bench/soak.py`` (docs/performance.md).
    """
    con.execute(f"SET memory_limit = '{memory_limit_mb}MiB'")
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    con.execute(f"SET allocator_flush_threshold = '{ALLOCATOR_FLUSH_THRESHOLD}'")


@contextmanager
def unbounded_memory(con: Connection) -> Iterator[None]:
    """DuckDB's own memory limit for one transaction over the whole ledger.

    ``bound_memory`` sizes the cache for the writer's steady work and for reports,
    which spill what does not fit.  Rebuilding the rollup inserts into a primary key,
    whose index DuckDB must hold in memory, so on a big ledger it cannot run inside that
    bound.  Wrap the whole transaction: DuckDB can only evict down to the limit again
    once the transaction's rows are committed and checkpointed into the file.  Postgres
    has no such limit: nothing to lift.
    """
    if dialect_of(con).postgres:
        yield
        return
    row = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.execute("RESET memory_limit")
    try:
        yield
    finally:
        if row is not None:
            con.execute("CHECKPOINT")
            con.execute(f"SET memory_limit = '{row[0]}'")


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
