"""The SQL that differs between the ledger's two backends, DuckDB and Postgres.

Everything else (the migrations, the report queries, the writer's statements) is one
text for both.  Queries are written with DuckDB's ``?`` placeholders; the Postgres
connection (``ledger.postgres.PgLedger``) turns them into psycopg's ``%s``.  A piece of
SQL lives here only where the two really disagree: DuckDB's ``epoch_ms``, ``HUGEINT``,
``DOUBLE`` and ``[]`` have other spellings on Postgres, and the rollup's fold and the
entity upserts use statements only one of them has (DuckDB's ``INSERT BY NAME`` and
``MERGE`` with ``map_concat``; Postgres's ``INSERT … ON CONFLICT``).

``dialect_of(con)`` tells which one a connection speaks: a ``PgLedger`` carries its
``dialect``; a DuckDB connection has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import duckdb

    from waystone_cli.ledger.postgres import PgLedger

#: A ledger connection: DuckDB's own, or the Postgres one that speaks the same methods.
Connection: TypeAlias = "duckdb.DuckDBPyConnection | PgLedger"


@dataclass(frozen=True)
class Dialect:
    name: str
    double: str  # a float column's type
    empty_list: str  # an empty VARCHAR[] literal, as a column DEFAULT
    wide_int: str  # an integer wider than BIGINT (sums of cost units)

    @property
    def postgres(self) -> bool:
        return self.name == "postgres"

    def epoch_minute(self, expr: str) -> str:
        """Minutes since 1970 of a naive UTC timestamp, as a BIGINT (floored)."""
        if self.postgres:
            return f"floor(extract(epoch FROM {expr}) / 60)::BIGINT"
        return f"epoch_ms({expr}) // 60000"

    def days(self, expr: str) -> str:
        """An interval of ``expr`` (an INTEGER) days."""
        if self.postgres:
            return f"make_interval(days => {expr})"
        return f"to_days({expr})"


DUCKDB = Dialect(name="duckdb", double="DOUBLE", empty_list="[]", wide_int="HUGEINT")
POSTGRES = Dialect(
    name="postgres", double="DOUBLE PRECISION", empty_list="'{}'", wide_int="NUMERIC(38, 0)"
)


def dialect_of(con: Any) -> Dialect:
    dialect: Dialect = getattr(con, "dialect", DUCKDB)
    return dialect


def placeholders(sql: str) -> str:
    """DuckDB's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled).

    The ledger's SQL has no ``?`` inside a string literal, so a plain replacement is
    exact; a query with a literal ``?`` would have to bind it as a parameter."""
    return sql.replace("%", "%%").replace("?", "%s")


def database_errors() -> tuple[type[Exception], ...]:
    """What a ledger statement raises when the database fails: DuckDB's errors, and
    psycopg's once it is loaded (a Postgres ledger is open)."""
    import sys

    import duckdb

    psycopg = sys.modules.get("psycopg")
    if psycopg is None:
        return (duckdb.Error,)
    return (duckdb.Error, psycopg.Error)
