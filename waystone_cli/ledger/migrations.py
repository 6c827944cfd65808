"""The ledger schema, built by ordered, named migrations recorded in the database.

Append a new function to ``MIGRATIONS`` to change the schema; never edit one that has
shipped.  ``migrate(con)`` applies, in order, those not yet recorded in
``_migrations``.

Times are stored as naive UTC ``TIMESTAMP``s.  Costs are ``DECIMAL(18, 10)`` so that
sums are exact; ``cost_usd`` is NULL when the model is unpriced (never a silent 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.dialect import Connection, dialect_of

Migration = Callable[[Connection], None]


def m001_requests(con: Connection) -> None:
    """On Postgres also the indexes DuckDB does without (its zone maps skip row groups
    by ``ts``): a BRIN index on ``ts`` (rows arrive in time order, so a few pages of it
    narrow a report's edges and the counters' rebuild to their span) and a hash index on
    ``id``, which makes ``drop_known`` (the replay of a spill) a lookup.  Hash, not a
    unique B-tree: ingest is about a sixth faster (bench/postgres_ledger.py), and the
    replay is made exactly-once by ``drop_known``, as on DuckDB."""
    double = dialect_of(con).double
    con.execute(
        f"""
        CREATE TABLE requests (
            id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            user_id VARCHAR,
            group_id VARCHAR,
            provider VARCHAR,
            requested_model VARCHAR,
            model VARCHAR,
            route VARCHAR NOT NULL,
            stream BOOLEAN NOT NULL DEFAULT false,
            status INTEGER NOT NULL,
            outcome VARCHAR NOT NULL,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cached_tokens BIGINT NOT NULL DEFAULT 0,
            reasoning_tokens BIGINT NOT NULL DEFAULT 0,
            audio_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DECIMAL(18, 10),
            priced BOOLEAN NOT NULL DEFAULT true,
            latency_ms {double},
            ttft_ms {double},
            overhead_ms {double},
            rulesets VARCHAR[],
            rules VARCHAR[],
            datasets VARCHAR[],
            usage_estimated BOOLEAN NOT NULL DEFAULT false,
            retain_days INTEGER,
            error VARCHAR
        )
        """
    )
    if dialect_of(con).postgres:
        con.execute("CREATE INDEX requests_ts ON requests USING brin (ts)")
        con.execute("CREATE INDEX requests_id ON requests USING hash (id)")


def m002_entities(con: Connection) -> None:
    con.execute(
        """
        CREATE TABLE users (
            id VARCHAR PRIMARY KEY,
            first_seen TIMESTAMP NOT NULL,
            last_seen TIMESTAMP NOT NULL,
            metadata JSON NOT NULL DEFAULT '{}'
        )
        """
    )
    con.execute(
        """
        CREATE TABLE groups (
            id VARCHAR PRIMARY KEY,
            first_seen TIMESTAMP NOT NULL,
            last_seen TIMESTAMP NOT NULL,
            metadata JSON NOT NULL DEFAULT '{}'
        )
        """
    )
    con.execute(
        """
        CREATE TABLE links (
            user_id VARCHAR NOT NULL,
            group_id VARCHAR NOT NULL,
            first_seen TIMESTAMP NOT NULL,
            PRIMARY KEY (user_id, group_id)
        )
        """
    )


def m003_content(con: Connection) -> None:
    con.execute(
        """
        CREATE TABLE content (
            request_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            input JSON,
            output VARCHAR
        )
        """
    )
    con.execute(
        """
        CREATE TABLE dataset_items (
            dataset VARCHAR NOT NULL,
            request_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL
        )
        """
    )


def m004_daily_rollup(con: Connection) -> None:
    """Per-day aggregates kept current by the writer, so reports stay fast on big ledgers.

    Key columns are NOT NULL so the writer can upsert: '' stands for "none" (an anonymous
    request, or no group); report queries turn '' back into NULL.  ``day`` is the UTC day.
    """
    con.execute(
        """
        CREATE TABLE usage_daily (
            day DATE NOT NULL,
            user_id VARCHAR NOT NULL,
            group_id VARCHAR NOT NULL,
            provider VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            requests BIGINT NOT NULL,
            input_tokens BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            cached_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            cost_usd DECIMAL(38, 10) NOT NULL,
            unpriced BIGINT NOT NULL,
            PRIMARY KEY (day, user_id, group_id, provider, model)
        )
        """
    )


def m005_empty_list_defaults(con: Connection) -> None:
    """``[]`` as the default of the list columns, as of the other columns' usual values:
    the writer leaves out of its insert a column no row of the batch sets (most rows
    have no ruleset, rule or dataset), and the rows must still read ``[]``, not NULL."""
    empty = dialect_of(con).empty_list
    for column in ("rulesets", "rules", "datasets"):
        con.execute(f"ALTER TABLE requests ALTER COLUMN {column} SET DEFAULT {empty}")


def m006_rollup_fold(con: Connection) -> None:
    """The daemon's writer folds its rows into ``usage_daily`` every few seconds, not in
    every batch (``ledger.rollup``).

    ``requests.seq`` numbers rows in the order the daemon's writer appended them; it is
    NULL for rows written before this migration and for one-off writes, which go into
    the rollup as they are inserted.  ``rollup_fold.folded_seq`` is the last ``seq``
    already in the rollup: the rows after it are what reports add to the rollup's days.
    """
    con.execute("ALTER TABLE requests ADD COLUMN seq BIGINT")
    con.execute("CREATE TABLE rollup_fold (folded_seq BIGINT NOT NULL)")
    con.execute("INSERT INTO rollup_fold VALUES (0)")


def m007_unpriced_needs_tokens(con: Connection) -> None:
    """Unpriced means tokens used at an unknown price: rows that used none (a moderation
    of an unpriced model was marked unpriced) become priced, and the rollup's
    ``unpriced`` counts only rows with tokens and no cost (it counted every NULL cost,
    refused and failed requests included).  A Postgres ledger starts after it: nothing to
    mend (and DuckDB's ``GROUP BY ALL`` is not Postgres SQL)."""
    if dialect_of(con).postgres:
        return
    con.execute(
        "UPDATE requests SET priced = true WHERE NOT priced AND input_tokens + output_tokens = 0"
    )
    con.execute(
        """
        UPDATE usage_daily AS d SET unpriced = c.unpriced
        FROM (SELECT CAST(ts AS DATE) AS day, COALESCE(user_id, '') AS user_id,
                     COALESCE(group_id, '') AS group_id, COALESCE(provider, '') AS provider,
                     COALESCE(model, '') AS model, count(*) FILTER (
                         WHERE cost_usd IS NULL AND input_tokens + output_tokens > 0
                     ) AS unpriced
              FROM requests GROUP BY ALL) AS c
        WHERE d.day = c.day AND d.user_id = c.user_id AND d.group_id = c.group_id
          AND d.provider = c.provider AND d.model = c.model
        """
    )


def m008_cache_write_tokens(con: Connection) -> None:
    """The tokens a request wrote to the provider's prompt cache (Anthropic's
    ``cache_creation_input_tokens``), a part of ``input_tokens`` as ``cached_tokens`` (the
    cache reads) is, priced at their own rate.  Older rows wrote none: 0."""
    con.execute("ALTER TABLE requests ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0")
    con.execute("ALTER TABLE usage_daily ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0")


def m009_flagged(con: Connection) -> None:
    """Whether a ``flag`` rule fired for the request (a spike, most often): the request
    went through, and ``usage top --flagged`` and ``usage show`` report it.  Older rows
    were never flagged: false.  Not in the rollup: flagged rows are rare, and a filter
    on the column skips every row group that holds none (``spans.source_sql``)."""
    con.execute("ALTER TABLE requests ADD COLUMN flagged BOOLEAN NOT NULL DEFAULT false")


def m010_alerts(con: Connection) -> None:
    """The alerts outbox (``ledger.alerts``): one row per event, keyed by its id (a UUID5
    of its dedupe key, so an event is stored once across restarts and instances), and
    one row per delivery attempt.  Attempts are appended, never updated: a row's state
    (attempts, last error, next attempt, delivered) is read from its latest attempt."""
    con.execute(
        """
        CREATE TABLE alerts (
            id VARCHAR PRIMARY KEY,
            type VARCHAR NOT NULL,
            dedupe_key VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            body VARCHAR NOT NULL
        )
        """
    )
    con.execute(
        """
        CREATE TABLE alert_attempts (
            alert_id VARCHAR NOT NULL,
            attempt INTEGER NOT NULL,
            attempted_at TIMESTAMP NOT NULL,
            status INTEGER,
            error VARCHAR,
            next_attempt_at TIMESTAMP,
            PRIMARY KEY (alert_id, attempt)
        )
        """
    )


def m011_instance(con: Connection) -> None:
    """The instance that served each request (``[cluster] instance``, see
    ``core.cluster.instance_name``), filled by the writer; NULL for older rows."""
    con.execute("ALTER TABLE requests ADD COLUMN instance VARCHAR")


def m012_instances(con: Connection) -> None:
    """One row per instance that ever served this ledger, refreshed by its heartbeat
    (``ledger.instances``): ``waystone cluster status`` lists those seen recently."""
    con.execute(
        """
        CREATE TABLE instances (
            name VARCHAR PRIMARY KEY,
            host VARCHAR NOT NULL,
            pid BIGINT NOT NULL,
            url VARCHAR NOT NULL,
            started_at TIMESTAMP NOT NULL,
            last_seen TIMESTAMP NOT NULL,
            requests_last_minute BIGINT NOT NULL DEFAULT 0
        )
        """
    )


def m013_commit_xid(con: Connection) -> None:
    """On Postgres, the id of the transaction that wrote each row (``xid``): several
    writers commit out of order, so a resumable export reads which rows are surely
    committed from the transaction ids rather than from a number the writers draw
    (``ledger.export``).  Older rows keep NULL (no table rewrite); the default fills the
    column from then on.  DuckDB has one writer, whose ``seq`` serves: nothing to do."""
    if dialect_of(con).postgres:
        con.execute("ALTER TABLE requests ADD COLUMN xid xid8")
        con.execute("ALTER TABLE requests ALTER COLUMN xid SET DEFAULT pg_current_xact_id()")


MIGRATIONS: list[Migration] = [
    m001_requests,
    m002_entities,
    m003_content,
    m004_daily_rollup,
    m005_empty_list_defaults,
    m006_rollup_fold,
    m007_unpriced_needs_tokens,
    m008_cache_write_tokens,
    m009_flagged,
    m010_alerts,
    m011_instance,
    m012_instances,
    m013_commit_xid,
]


def migrate(con: Connection) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
    _refuse_unknown(con, done)
    applied: list[str] = []
    for migration in MIGRATIONS:
        name = migration.__name__
        if name in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            migration(con)
            con.execute("INSERT INTO _migrations VALUES (?, now()::TIMESTAMP)", [name])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def check_known(con: Connection) -> None:
    """Refuse a ledger that a newer waystone migrated (for a read-only connection)."""
    tables = "information_schema.tables" if dialect_of(con).postgres else "duckdb_tables()"
    has_table = con.execute(
        f"SELECT count(*) FROM {tables} WHERE table_name = '_migrations'"
    ).fetchone()
    if has_table and has_table[0]:
        done = {row[0] for row in con.execute("SELECT name FROM _migrations").fetchall()}
        _refuse_unknown(con, done)


def _refuse_unknown(con: Connection, done: set[str]) -> None:
    # A migration this code does not know may have added a column it would not fill
    # (NOT NULL, no default): every insert would fail.  Refusing at start says why.
    unknown = sorted(done - {m.__name__ for m in MIGRATIONS})
    if unknown:
        raise WaystoneError(
            f"the ledger {_path(con)} was written by a newer waystone (migrations this "
            f"version does not know: {', '.join(unknown)}); upgrade waystone to use it"
        )


def _path(con: Connection) -> str:
    if dialect_of(con).postgres:
        from waystone_cli.ledger.postgres import hide_password

        return hide_password(getattr(con, "url", "postgres"))
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return str(row[0]) if row and row[0] else ":memory:"


def applied_migrations(con: Connection) -> list[Any]:
    return [
        r[0]
        for r in con.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()
    ]
