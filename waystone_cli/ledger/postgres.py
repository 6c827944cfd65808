"""The ledger in Postgres (SPEC §12): a connection that speaks what the ledger's code
asks of a DuckDB one, and the writer's bulk path, COPY in binary format.

``PgLedger`` wraps one psycopg 3 connection in autocommit mode: ``begin()``,
``commit()`` and ``rollback()`` are explicit, as on DuckDB, and ``execute`` takes the
ledger's ``?`` placeholders (``dialect.placeholders``).  A connection that broke (the
server restarted or went away) is opened again at the next statement, so the daemon's
writer needs nothing but its retry: while the server is down each batch fails with an
``OperationalError`` (not a row's fault, ``ledger.rows``), the rows go to the spill file,
and they are replayed once a statement gets through again.

psycopg 3 rather than asyncpg: the writer runs its batches on one worker thread, like
DuckDB's, so a synchronous client fits the existing seam; psycopg has binary COPY with
typed columns (``Copy.set_types``), server-side parameter binding, and its sync API is
what the CLI needs (no event loop to run a report).

Sessions run in UTC: the ledger stores naive UTC timestamps, and ``now()::TIMESTAMP``
(the migrations' ``applied_at``) must read as UTC too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a connection opens: DuckDB users never pay for it
    import psycopg

from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.dialect import POSTGRES, placeholders

#: The Postgres type of each ``requests`` column the writer copies (binary COPY needs
#: the exact types: an array's element type is checked against the column's).
COPY_TYPES: dict[str, str] = {
    "id": "varchar",
    "ts": "timestamp",
    "user_id": "varchar",
    "group_id": "varchar",
    "provider": "varchar",
    "requested_model": "varchar",
    "model": "varchar",
    "route": "varchar",
    "stream": "bool",
    "status": "int4",
    "outcome": "varchar",
    "input_tokens": "int8",
    "output_tokens": "int8",
    "cached_tokens": "int8",
    "cache_write_tokens": "int8",
    "reasoning_tokens": "int8",
    "audio_tokens": "int8",
    "cost_usd": "numeric",
    "priced": "bool",
    "latency_ms": "float8",
    "ttft_ms": "float8",
    "overhead_ms": "float8",
    "rulesets": "varchar[]",
    "rules": "varchar[]",
    "datasets": "varchar[]",
    "usage_estimated": "bool",
    "retain_days": "int4",
    "error": "varchar",
    "flagged": "bool",
    "instance": "varchar",
    "seq": "int8",
}

# A key of Postgres's advisory locks: one instance at a time migrates the schema.
_MIGRATION_LOCK = 0x57A7_0001


class PgLedger:
    """One Postgres connection with the ledger's connection methods (see the module)."""

    dialect = POSTGRES

    def __init__(self, url: str, *, connect_timeout_s: int = 5) -> None:
        self.url = url
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._staged: psycopg.Connection[tuple[Any, ...]] | None = None  # has ``_batch``

    def connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The open connection, opened (again) if it is missing or broke."""
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=self._timeout, options="-c TimeZone=UTC"
            )
            # JSON columns read as their text, as DuckDB returns them.
            from psycopg.types.string import TextLoader

            conn.adapters.register_loader("json", TextLoader)
            self._conn = conn
        return conn

    def execute(
        self, sql: str, params: Sequence[Any] | None = None
    ) -> psycopg.Cursor[tuple[Any, ...]]:
        conn = self.connection()
        if params is None:
            return conn.execute(sql)  # psycopg parses no placeholders without parameters
        return conn.execute(placeholders(sql), list(params))

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self._staged = None  # ``_batch`` may have been created in the transaction
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return  # nothing to roll back: the server ended the transaction
        conn.execute("ROLLBACK")

    def cursor(self) -> PgLedger:
        """Itself: one thread (the writer's) uses the connection at a time."""
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def copy_batch(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """``rows`` into the session's ``_batch`` table by one binary COPY, then from there
        into ``requests``; the caller holds the transaction, and its commit empties
        ``_batch``.  The rows stay there until then for the statements that derive from
        the whole batch (the rollup's upsert, ``rollup.add_batch_to_rollup``): Postgres
        sums them itself, with nothing to send back and forth.  A temporary table writes
        no WAL, so staging costs one more in-memory copy of the rows."""
        conn = self.connection()
        if self._staged is not conn:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _batch (LIKE requests INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            self._staged = conn
        names = ", ".join(columns)
        with conn.cursor().copy(f"COPY _batch ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([COPY_TYPES[c] for c in columns])
            for row in rows:
                copy.write_row(row)
        conn.execute("INSERT INTO requests SELECT * FROM _batch")

    @contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held while migrating: instances starting together migrate one after another."""
        self.execute("SELECT pg_advisory_lock(?)", [_MIGRATION_LOCK])
        try:
            yield
        finally:
            self.execute("SELECT pg_advisory_unlock(?)", [_MIGRATION_LOCK])


def open_postgres(url: str) -> PgLedger:
    """Connect and migrate; the caller closes it.  A server that does not answer is a
    ``WaystoneError`` naming it (without its password)."""
    import psycopg

    from waystone_cli.ledger.migrations import migrate

    con = PgLedger(url)
    try:
        con.connection()
        with con.migration_lock():
            migrate(con)
    except psycopg.Error as err:
        con.close()
        raise WaystoneError(f"cannot open the Postgres ledger {hide_password(url)}: {err}") from err
    except BaseException:
        con.close()
        raise
    return con


def hide_password(url: str) -> str:
    """The URL with its password, if any, replaced by ``***``."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.rpartition("//")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}//{user}:***@{tail}"
