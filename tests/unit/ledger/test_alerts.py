"""The alerts outbox: stored once by id, attempts appended, pending and listed states."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from waystone_cli.core.alerts import AlertEvent, unpriced_event
from waystone_cli.ledger.alerts import (
    Attempt,
    Pending,
    list_alerts,
    pending,
    recent_keys,
    record_attempts,
    store,
)
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.postgres import open_postgres

T0 = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The outbox on each backend: instances sharing a Postgres ledger share it."""
    if request.param == "postgres":
        con: Any = open_postgres(request.getfixturevalue("postgres_server").url)
    else:
        con = open_readwrite(tmp_path / "ledger.duckdb")
    yield con
    con.close()


def _event(n: int, at: datetime = T0) -> AlertEvent:
    body = f'{{"id":"e{n}","type":"budget.threshold","subject":{{"kind":"user","id":"u{n}"}},"text":"t{n} é"}}'
    return AlertEvent(id=f"e{n}", type="budget.threshold", key=f"k{n}", at=at, body=body.encode())


def _failed(ident: str, n: int, at: datetime, error: str = "HTTP 500") -> Attempt:
    return Attempt(
        alert_id=ident,
        attempt=n,
        at=at,
        status=500,
        error=error,
        next_attempt_at=at + timedelta(seconds=2),
    )


def test_an_event_is_stored_once_whoever_inserts_it(con: duckdb.DuckDBPyConnection) -> None:
    assert sorted(store(con, [_event(1), _event(2)])) == ["e1", "e2"]
    assert store(con, [_event(2), _event(3)]) == ["e3"]
    assert con.execute("SELECT count(*) FROM alerts").fetchall() == [(3,)]


def test_pending_lists_undelivered_events_with_their_exact_bodies(
    con: duckdb.DuckDBPyConnection,
) -> None:
    store(con, [_event(1), _event(2, T0 + timedelta(seconds=1))])
    delivered = Attempt(
        alert_id="e2", attempt=2, at=T0, status=204, error=None, next_attempt_at=None
    )
    record_attempts(con, [_failed("e1", 1, T0), _failed("e2", 1, T0), delivered])
    assert pending(con) == [
        Pending(id="e1", type="budget.threshold", body=_event(1).body, attempts=1)
    ]


def test_recent_keys_keep_every_unpriced_model(con: duckdb.DuckDBPyConnection) -> None:
    old = T0 - timedelta(days=40)
    store(con, [_event(1, old), _event(2), unpriced_event("up", "m", old)])
    assert sorted(recent_keys(con, T0 - timedelta(days=32))) == ["k2", "model.unpriced|up/m"]


def test_list_shows_each_delivery_state(con: duckdb.DuckDBPyConnection) -> None:
    store(
        con, [_event(1), _event(2, T0 + timedelta(seconds=1)), _event(3, T0 + timedelta(seconds=2))]
    )
    record_attempts(con, [_failed("e2", 1, T0, "connection refused")])
    record_attempts(con, [_failed("e3", 1, T0)])
    record_attempts(
        con,
        [
            Attempt(
                alert_id="e3",
                attempt=2,
                at=T0 + timedelta(seconds=3),
                status=200,
                error=None,
                next_attempt_at=None,
            )
        ],
    )
    listed = list_alerts(con)
    assert [{k: v for k, v in row.items() if k != "event"} for row in listed] == [
        {
            "id": "e3",
            "type": "budget.threshold",
            "at": "2026-12-02T12:00:02Z",
            "subject": {"kind": "user", "id": "u3"},
            "text": "t3 é",
            "state": "delivered",
            "attempts": 2,
            "last_error": "HTTP 500",
            "next_attempt_at": None,
            "delivered_at": "2026-12-02T12:00:03Z",
        },
        {
            "id": "e2",
            "type": "budget.threshold",
            "at": "2026-12-02T12:00:01Z",
            "subject": {"kind": "user", "id": "u2"},
            "text": "t2 é",
            "state": "retrying",
            "attempts": 1,
            "last_error": "connection refused",
            "next_attempt_at": "2026-12-02T12:00:02Z",
            "delivered_at": None,
        },
        {
            "id": "e1",
            "type": "budget.threshold",
            "at": "2026-12-02T12:00:00Z",
            "subject": {"kind": "user", "id": "u1"},
            "text": "t1 é",
            "state": "pending",
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            "delivered_at": None,
        },
    ]
    assert [row["id"] for row in list_alerts(con, since="2026-12-02T12:00:01")] == ["e3", "e2"]
    assert listed[0]["event"]["id"] == "e3"


def test_a_write_after_a_list_on_the_same_connection_commits(
    con: duckdb.DuckDBPyConnection,
) -> None:
    # A half-read result would keep a transaction open and make the next write fail.
    store(con, [_event(1)])
    list_alerts(con)
    pending(con)
    recent_keys(con, T0)
    if isinstance(con, duckdb.DuckDBPyConnection):
        con.execute("CHECKPOINT")
    assert store(con, [_event(2)]) == ["e2"]


def test_more_events_than_one_statement_holds_are_all_stored_once(
    con: duckdb.DuckDBPyConnection,
) -> None:
    many = [_event(n) for n in range(450)]
    # RETURNING gives the new ids in no particular order.
    assert set(store(con, many[:300])) == {f"e{n}" for n in range(300)}
    assert set(store(con, many)) == {f"e{n}" for n in range(300, 450)}
    record_attempts(con, [_failed(f"e{n}", 1, T0) for n in range(450)])
    assert con.execute(
        "SELECT count(*), count(DISTINCT alert_id) FROM alert_attempts"
    ).fetchall() == [(450, 450)]
