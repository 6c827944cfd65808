"""Users, groups, links, content and dataset rows the writer keeps, and the entity queries."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from tests.unit.ledger.conftest import T0, record
from waystone_cli.core.errors import UsageError
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.batch import insert_batch
from waystone_cli.ledger.entities import (
    QUERIES,
    SeenEntity,
    load_entities,
    seen_entities,
    seen_entity,
)
from waystone_cli.ledger.writer import LedgerWriter


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def write(con: duckdb.DuckDBPyConnection, *batches: list[RequestRecord]) -> None:
    """Each list becomes its own batch (a flush after each)."""
    writer = LedgerWriter(con)
    await writer.start()
    for batch in batches:
        for r in batch:
            writer.submit(r)
        await writer.flush()
    await writer.close()


async def test_entities_track_first_and_last_seen_and_merge_metadata_in_time_order(
    con: duckdb.DuckDBPyConnection,
) -> None:
    await write(
        con,
        [
            record(10, user_id="alice", user_metadata={"tier": "free", "region": "eu"}),
            record(5, user_id="alice", user_metadata={"tier": "trial", "seats": 1}),
            record(20, user_id="bob"),
        ],
        # A later batch, with an earlier row (as a drained spill may bring).
        [
            record(30, user_id="alice", user_metadata={"tier": "pro", "nested": {"a": 1}}),
            record(1, user_id="alice"),
            record(40, user_id="bob", user_metadata={"ok": None}),
        ],
    )
    assert con.execute(
        "SELECT id, first_seen, last_seen, metadata FROM users ORDER BY id"
    ).fetchall() == [
        ("alice", at(1), at(30), '{"tier":"pro","seats":1,"region":"eu","nested":{"a":1}}'),
        ("bob", at(20), at(40), '{"ok":null}'),
    ]


async def test_a_request_naming_both_records_a_link_that_keeps_its_first_time(
    con: duckdb.DuckDBPyConnection,
) -> None:
    await write(
        con,
        [record(10, user_id="alice", group_id="acme", group_metadata={"plan": "team"})],
        [
            record(20, user_id="alice", group_id="acme"),
            record(3, user_id="alice", group_id="acme"),
            record(25, user_id="carol", group_id="acme"),
            record(30, user_id="alice"),
            record(31, group_id="solo", group_metadata={"plan": "free"}),
        ],
    )
    assert con.execute("SELECT * FROM links ORDER BY ALL").fetchall() == [
        ("alice", "acme", at(3)),
        ("carol", "acme", at(25)),
    ]
    assert con.execute(
        "SELECT id, first_seen, last_seen, metadata FROM groups ORDER BY id"
    ).fetchall() == [
        ("acme", at(3), at(25), '{"plan":"team"}'),
        ("solo", at(31), at(31), '{"plan":"free"}'),
    ]


async def test_captured_and_dataset_requests_keep_their_content(
    con: duckdb.DuckDBPyConnection,
) -> None:
    messages = [{"role": "user", "content": "héllo"}]
    await write(
        con,
        [
            record(1, capture=True, content_input=messages, content_output="hi"),
            record(2, datasets=["review", "golden"], content_input={"prompt": "x"}),
            record(3, content_input=messages, content_output="not kept"),
        ],
    )
    assert con.execute("SELECT * FROM content ORDER BY request_id").fetchall() == [
        ("req-000001", at(1), '[{"role": "user", "content": "héllo"}]', "hi"),
        ("req-000002", at(2), '{"prompt": "x"}', None),
    ]
    assert con.execute("SELECT * FROM dataset_items ORDER BY dataset").fetchall() == [
        ("golden", "req-000002", at(2)),
        ("review", "req-000002", at(2)),
    ]


def seed(con: duckdb.DuckDBPyConnection) -> None:
    insert_batch(
        con,
        [
            record(1, user_id="alice", group_id="acme", user_metadata={"tier": "free"}),
            record(2, user_id="bob", group_id="acme"),
            record(3, user_id="alice", group_id="beta", group_metadata={"region": "eu"}),
            record(4, user_id="zed"),
        ],
    )


def test_seen_entities_lists_users_with_their_groups(con: duckdb.DuckDBPyConnection) -> None:
    seed(con)
    assert seen_entities(con, "user") == [
        {
            "id": "alice",
            "metadata": {"tier": "free"},
            "first_seen": "2026-03-01T12:00:01",
            "last_seen": "2026-03-01T12:00:03",
            "groups": ["acme", "beta"],
        },
        {
            "id": "bob",
            "metadata": {},
            "first_seen": "2026-03-01T12:00:02",
            "last_seen": "2026-03-01T12:00:02",
            "groups": ["acme"],
        },
        {
            "id": "zed",
            "metadata": {},
            "first_seen": "2026-03-01T12:00:04",
            "last_seen": "2026-03-01T12:00:04",
            "groups": [],
        },
    ]


def test_seen_entity_shows_a_group_with_its_members(con: duckdb.DuckDBPyConnection) -> None:
    seed(con)
    assert seen_entity(con, "group", "acme") == {
        "id": "acme",
        "metadata": {},
        "first_seen": "2026-03-01T12:00:01",
        "last_seen": "2026-03-01T12:00:02",
        "members": ["alice", "bob"],
    }
    assert seen_entity(con, "group", "nobody") is None
    assert [g["id"] for g in seen_entities(con, "group")] == ["acme", "beta"]


def test_an_unknown_kind_is_a_usage_error(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UsageError, match="unknown entity kind 'team'"):
        seen_entities(con, "team")


def test_load_entities_gives_the_daemon_everything_seen(con: duckdb.DuckDBPyConnection) -> None:
    seed(con)
    users, groups, links = load_entities(con)
    assert users == {
        "alice": SeenEntity("alice", {"tier": "free"}, at(1)),
        "bob": SeenEntity("bob", {}, at(2)),
        "zed": SeenEntity("zed", {}, at(4)),
    }
    assert groups == {
        "acme": SeenEntity("acme", {}, at(1)),
        "beta": SeenEntity("beta", {"region": "eu"}, at(3)),
    }
    assert links == {("alice", "acme"), ("bob", "acme"), ("alice", "beta")}


def test_the_queries_are_registered_for_the_admin_socket() -> None:
    assert {"seen_entities": seen_entities, "seen_entity": seen_entity} == QUERIES
