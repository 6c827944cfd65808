"""The usage report queries: exact sums worked out by hand, the rollup path equal to a raw
GROUP BY, spikes planted and found, datasets, exports and pruning."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from waystone_cli.core.errors import NotFoundError, UsageError
from waystone_cli.ledger import datasets, export, reports, retention, spikes
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.postgres import open_postgres
from waystone_cli.ledger.rollup import rebuild_rollup

# Prices used below (USD per million tokens): gpt-4o 2.5 in / 10 out, gpt-4o-mini
# 0.15 / 0.6, local/llama unpriced.
ROWS = [
    # id, ts, user, group, provider, model, input, output, cost, outcome
    ("r1", "2026-11-01 09:30:00", "alice", "acme", "openai", "gpt-4o", 1000, 200, "0.0045", "ok"),
    (
        "r2",
        "2026-11-01 23:59:00",
        "alice",
        None,
        "openai",
        "gpt-4o-mini",
        2000,
        1000,
        "0.0009",
        "ok",
    ),
    ("r3", "2026-11-02 12:00:00", "bob", "acme", "openai", "gpt-4o", 500, 100, "0.00225", "ok"),
    ("r4", "2026-11-02 18:00:00", "bob", "acme", "local", "llama", 300, 50, None, "ok"),
    ("r5", "2026-11-03 06:00:00", None, None, "openai", "gpt-4o-mini", 100, 100, "0.000075", "ok"),
    ("r6", "2026-11-03 08:00:00", "carol", "beta", "openai", "gpt-4o", 4000, 1000, "0.02", "ok"),
    ("r7", "2026-11-03 08:30:00", "alice", "acme", "openai", "gpt-4o", 0, 0, "0", "blocked"),
]


def insert(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` in one statement (one list parameter per column)."""
    columns = list(zip(*rows, strict=True))
    con.execute(
        """INSERT INTO requests (id, ts, user_id, group_id, provider, requested_model, model,
               route, status, outcome, input_tokens, output_tokens, cost_usd, priced)
           SELECT id, ts, u, g, p, m, m, '/v1/chat/completions', 200, o, i, t, c, c IS NOT NULL
           FROM (SELECT UNNEST(?::VARCHAR[]) AS id, UNNEST(?::TIMESTAMP[]) AS ts,
                        UNNEST(?::VARCHAR[]) AS u, UNNEST(?::VARCHAR[]) AS g,
                        UNNEST(?::VARCHAR[]) AS p, UNNEST(?::VARCHAR[]) AS m,
                        UNNEST(?::BIGINT[]) AS i, UNNEST(?::BIGINT[]) AS t,
                        UNNEST(?::DECIMAL(18, 10)[]) AS c, UNNEST(?::VARCHAR[]) AS o) AS v""",
        [list(c) for c in columns],
    )


@pytest.fixture(params=["duckdb", "postgres"])
def con(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The ledger on each backend: one set of report functions, the same answers.  A
    test of what only DuckDB has (its writer's fold, spikes, exports) names its backend."""
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        con: Any = open_postgres(server.url)
    else:
        con = open_readwrite(tmp_path / "ledger.duckdb")
    yield con
    con.close()


duckdb_only = pytest.mark.parametrize("con", ["duckdb"], indirect=True)


@pytest.fixture
def ledger(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    insert(con, ROWS)
    con.execute("INSERT INTO links VALUES ('alice', 'acme', '2026-11-01 09:30:00')")
    con.execute("INSERT INTO links VALUES ('bob', 'acme', '2026-11-02 12:00:00')")
    con.execute("INSERT INTO links VALUES ('dave', 'acme', '2026-10-01 00:00:00')")
    rebuild_rollup(con)
    return con


def row(
    key: str,
    value: Any,
    req: int,
    tin: int,
    tout: int,
    cost: float | None,
    unpriced: int = 0,
    *,
    cached: int = 0,
    writes: int = 0,
) -> dict[str, Any]:
    return {
        key: value, "requests": req, "input_tokens": tin, "output_tokens": tout,
        "cached_tokens": cached, "cache_write_tokens": writes,
        "total_tokens": tin + tout, "cost_usd": cost, "unpriced_requests": unpriced,
    }  # fmt: skip


def test_top_users_by_cost_all_time(ledger: duckdb.DuckDBPyConnection) -> None:
    total = row("x", None, 7, 7900, 2450, 0.027725, 1)
    del total["x"]
    assert reports.top(ledger) == {
        "rows": [
            row("user", "carol", 1, 4000, 1000, 0.02),
            row("user", "alice", 3, 3000, 1200, 0.0054),
            row("user", "bob", 2, 800, 150, 0.00225, 1),
            row("user", None, 1, 100, 100, 0.000075),
        ],
        "entities": 4,
        "total": total,
    }


@pytest.mark.parametrize(
    ("by", "metric", "since", "until", "limit", "group", "expected"),
    [
        # Unpriced models sort last on cost: their cost is unknown, not 0.
        ("model", "cost", None, None, 10, None, [
            row("model", "openai/gpt-4o", 4, 5500, 1300, 0.02675),
            row("model", "openai/gpt-4o-mini", 2, 2100, 1100, 0.000975),
            row("model", "local/llama", 1, 300, 50, None, 1),
        ]),
        ("provider", "tokens", None, None, 10, None, [
            row("provider", "openai", 6, 7600, 2400, 0.027725),
            row("provider", "local", 1, 300, 50, None, 1),
        ]),
        ("group", "requests", None, None, 10, None, [
            row("group", "acme", 4, 1800, 350, 0.00675, 1),
            row("group", None, 2, 2100, 1100, 0.000975),
            row("group", "beta", 1, 4000, 1000, 0.02),
        ]),
        # Partial days at both ends (read raw) around one whole day (from the rollup).
        ("user", "tokens", "2026-11-01T12:00:00", "2026-11-03T07:00:00", 10, None, [
            row("user", "alice", 1, 2000, 1000, 0.0009),
            row("user", "bob", 2, 800, 150, 0.00225, 1),
            row("user", None, 1, 100, 100, 0.000075),
        ]),
        ("user", "cost", None, None, 1, "acme", [row("user", "alice", 2, 1000, 200, 0.0045)]),
        ("user", "cost", "2026-11-04T00:00:00", None, 10, None, []),
    ],
)  # fmt: skip
def test_top_rows(
    ledger: duckdb.DuckDBPyConnection,
    by: str, metric: str, since: str | None, until: str | None, limit: int, group: str | None,
    expected: list[dict[str, Any]],
) -> None:  # fmt: skip
    result = reports.top(
        ledger, by=by, metric=metric, since=since, until=until, limit=limit, group=group
    )
    assert result["rows"] == expected


def test_unknown_cost_sorts_after_a_known_zero(con: duckdb.DuckDBPyConnection) -> None:
    insert(con, [
        ("a", "2026-11-01 10:00:00", "aaron", None, "local", "llama", 10, 10, None, "ok"),
        ("z", "2026-11-01 11:00:00", "zoe", None, "openai", "gpt-4o", 0, 0, "0", "blocked"),
    ])  # fmt: skip
    rebuild_rollup(con)
    assert reports.top(con)["rows"] == [
        row("user", "zoe", 1, 0, 0, 0.0),
        row("user", "aaron", 1, 10, 10, None, 1),
    ]


def test_top_refuses_an_unknown_dimension_and_a_reversed_span(
    ledger: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(UsageError, match="--by must be one of user, group, model, provider"):
        reports.top(ledger, by="team")
    with pytest.raises(UsageError, match="--since must be earlier than --until"):
        reports.top(ledger, since="2026-11-02T00:00:00", until="2026-11-01T00:00:00")


def test_whole_days_come_from_the_rollup(ledger: duckdb.DuckDBPyConnection) -> None:
    # Delete the raw rows of a whole day: a report that spans that day still counts them,
    # so it read the rollup, while a span cutting into that day reads raw rows.
    ledger.execute("DELETE FROM requests WHERE ts::DATE = '2026-11-02'")
    whole = reports.top(ledger, by="user", since="2026-11-02T00:00:00", until="2026-11-03T00:00:00")
    assert whole["rows"] == [row("user", "bob", 2, 800, 150, 0.00225, 1)]
    part = reports.top(ledger, by="user", since="2026-11-02T01:00:00", until="2026-11-03T00:00:00")
    assert part["rows"] == []


def test_show_user_totals_models_groups_and_daily(ledger: duckdb.DuckDBPyConnection) -> None:
    assert reports.show(ledger, "user", "alice", since="2026-11-01T00:00:00") == {
        **row("user", "alice", 3, 3000, 1200, 0.0054),
        "models": [
            row("model", "openai/gpt-4o", 2, 1000, 200, 0.0045),
            row("model", "openai/gpt-4o-mini", 1, 2000, 1000, 0.0009),
        ],
        "groups": [
            row("group", "acme", 2, 1000, 200, 0.0045),
            row("group", None, 1, 2000, 1000, 0.0009),
        ],
        "flagged_requests": 0,
        "daily": [
            row("day", "2026-11-01", 2, 3000, 1200, 0.0054),
            row("day", "2026-11-02", 0, 0, 0, 0.0),
            row("day", "2026-11-03", 1, 0, 0, 0.0),
        ],
    }


def test_show_group_lists_linked_members_without_usage(ledger: duckdb.DuckDBPyConnection) -> None:
    result = reports.show(ledger, "group", "acme", until="2026-11-03T00:00:00")
    assert result["members"] == [
        row("user", "alice", 1, 1000, 200, 0.0045),
        row("user", "bob", 2, 800, 150, 0.00225, 1),
        row("user", "dave", 0, 0, 0, 0.0),
    ]
    assert result["daily"] == [
        row("day", "2026-11-01", 1, 1000, 200, 0.0045),
        row("day", "2026-11-02", 2, 800, 150, 0.00225, 1),
    ]


def test_timeline_by_hour_keeps_empty_hours(ledger: duckdb.DuckDBPyConnection) -> None:
    assert reports.timeline(
        ledger, every="hour", since="2026-11-03T05:30:00", until="2026-11-03T08:45:00"
    ) == [
        row("bucket", "2026-11-03T05:00:00", 0, 0, 0, 0.0),
        row("bucket", "2026-11-03T06:00:00", 1, 100, 100, 0.000075),
        row("bucket", "2026-11-03T07:00:00", 0, 0, 0, 0.0),
        row("bucket", "2026-11-03T08:00:00", 2, 4000, 1000, 0.02),
    ]


def test_timeline_by_day_for_one_model(ledger: duckdb.DuckDBPyConnection) -> None:
    assert reports.timeline(ledger, every="day", model="gpt-4o") == [
        row("bucket", "2026-11-01T00:00:00", 1, 1000, 200, 0.0045),
        row("bucket", "2026-11-02T00:00:00", 1, 500, 100, 0.00225),
        row("bucket", "2026-11-03T00:00:00", 2, 4000, 1000, 0.02),
    ]
    assert reports.timeline(ledger, every="day", model="local/llama") == [
        row("bucket", "2026-11-02T00:00:00", 1, 300, 50, None, 1),
    ]


def test_status_of_an_empty_and_a_full_ledger(con: duckdb.DuckDBPyConnection) -> None:
    assert reports.status(con) == {"requests": 0, "first": None, "last": None}
    insert(con, ROWS)
    assert reports.status(con) == {
        "requests": 7, "first": "2026-11-01T09:30:00", "last": "2026-11-03T08:30:00",
    }  # fmt: skip


# --- the rollup path equals one raw GROUP BY, on random data and random spans ----------


def random_rows(n: int, seed: int) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    start = datetime(2026, 10, 1)
    rows = []
    for i in range(n):
        ts = start + timedelta(seconds=i * 5 * 86400 // n)  # in time order, over 5 days
        user = rnd.choice([None, "u1", "u2", "u3", "u4"])
        group = rnd.choice([None, "g1", "g2"])
        provider, model = rnd.choice([("openai", "gpt-4o"), ("openai", "o3"), ("local", "llama")])
        tin, tout = rnd.randrange(0, 5000), rnd.randrange(0, 2000)
        cost = None if provider == "local" else str(Decimal(rnd.randrange(0, 10**8)) / 10**10)
        rows.append(
            (f"q{i}", ts.isoformat(" "), user, group, provider, model, tin, tout, cost, "ok")
        )
    return rows


def raw_top(
    con: duckdb.DuckDBPyConnection, by: str, since: str | None, until: str | None
) -> list[dict[str, Any]]:
    key = {"user": "user_id", "group": "group_id", "provider": "provider",
           "model": "provider || '/' || model"}[by]  # fmt: skip
    result = con.execute(
        f"""SELECT {key}, count(*), sum(input_tokens), sum(output_tokens),
                   sum(input_tokens) + sum(output_tokens), sum(cost_usd),
                   count(*) FILTER (WHERE cost_usd IS NULL),
                   sum(cached_tokens), sum(cache_write_tokens)
            FROM requests WHERE (?::TIMESTAMP IS NULL OR ts >= ?) AND (?::TIMESTAMP IS NULL OR ts < ?)
            GROUP BY 1 ORDER BY 6 DESC NULLS LAST, 1 NULLS LAST""",
        [since, since, until, until],
    ).fetchall()
    return [reports.usage_row(by, r[0], r[1:]) for r in result]


def random_spans(rnd: random.Random, count: int) -> list[tuple[str | None, str | None]]:
    """Report spans over the random rows' week, on quarter hours, either end maybe open."""
    base = datetime(2026, 9, 30)
    spans = []
    for _ in range(count):
        a, b = sorted(rnd.sample(range(0, 7 * 24 * 4), 2))
        since = rnd.choice([None, (base + timedelta(minutes=15 * a)).isoformat()])
        until = rnd.choice([None, (base + timedelta(minutes=15 * b)).isoformat()])
        spans.append((since, until))
    return spans


def test_rollup_answers_equal_a_raw_group_by(con: duckdb.DuckDBPyConnection) -> None:
    insert(con, random_rows(3000, seed=7))
    # Cache reads and writes, parts of the input, differing from row to row.
    con.execute(
        "UPDATE requests SET cached_tokens = CAST(floor(input_tokens / 3) AS BIGINT), "
        "cache_write_tokens = (input_tokens * 7) % 101"
    )
    rebuild_rollup(con)
    for since, until in random_spans(random.Random(11), 40):
        for by in ("user", "group", "model", "provider"):
            got = reports.top(con, by=by, since=since, until=until, limit=100)["rows"]
            assert got == raw_top(con, by, since, until), (by, since, until)


# --- spikes ---------------------------------------------------------------------------


def flat_hours(con: duckdb.DuckDBPyConnection, user: str, hours: int, per_hour: int) -> None:
    """``per_hour`` requests of 100 input tokens each hour, for ``hours`` hours from Nov 1."""
    start = datetime(2026, 11, 1)
    insert(con, [
        (f"{user}-{i}", (start + timedelta(minutes=(i // per_hour) * 60 + i % per_hour)).isoformat(" "),
         user, None, "openai", "gpt-4o", 100, 0, "0.00025", "ok")
        for i in range(hours * per_hour)
    ])  # fmt: skip


def test_spikes_find_nothing_in_flat_data(con: duckdb.DuckDBPyConnection) -> None:
    flat_hours(con, "u1", 72, 10)
    flat_hours(con, "u2", 72, 3)
    rebuild_rollup(con)
    assert (
        spikes.spikes(
            con, since="2026-11-02T00:00:00", until="2026-11-04T00:00:00", metric="tokens"
        )
        == []
    )


def test_spikes_find_a_planted_hour(con: duckdb.DuckDBPyConnection) -> None:
    flat_hours(con, "u1", 72, 10)
    flat_hours(con, "u2", 72, 3)
    insert(con, [(f"s{i}", "2026-11-02 15:20:00", "u1", None, "openai", "gpt-4o", 100, 0, "0.00025", "ok")
                 for i in range(50)])  # fmt: skip
    rebuild_rollup(con)
    found = spikes.spikes(
        con, since="2026-11-02T00:00:00", until="2026-11-04T00:00:00", metric="tokens"
    )
    assert found == [{
        "user": "u1", "bucket": "2026-11-02T15:00:00", "metric": "tokens",
        "value": 6000.0, "baseline": 1000.0, "factor": 6.0,
    }]  # fmt: skip


def test_spikes_by_day_use_the_trailing_fortnight(con: duckdb.DuckDBPyConnection) -> None:
    flat_hours(con, "u1", 24 * 20, 1)
    insert(con, [(f"s{i}", "2026-11-18 10:00:00", "u1", "g", "openai", "gpt-4o", 100, 0, "0.00025", "ok")
                 for i in range(100)])  # fmt: skip
    rebuild_rollup(con)
    found = spikes.spikes(
        con,
        since="2026-11-15T00:00:00",
        until="2026-11-21T00:00:00",
        every="day",
        metric="requests",
    )
    assert found == [{
        "user": "u1", "bucket": "2026-11-18T00:00:00", "metric": "requests",
        "value": 124.0, "baseline": 24.0, "factor": 5.17,
    }]  # fmt: skip
    by_group = spikes.spikes(
        con, since="2026-11-15T00:00:00", every="day", by="group", metric="requests"
    )
    assert by_group == []  # the group has no history: median 0, not judged


# --- datasets -------------------------------------------------------------------------


def add_items(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""INSERT INTO content VALUES
        ('r1', '2026-11-01 09:30:00', '{"messages": [{"role": "user", "content": "hi"}]}', 'hello'),
        ('r3', '2026-11-02 12:00:00', '{"input": "ping"}', 'pong')""")
    con.execute("""INSERT INTO dataset_items VALUES
        ('newcomers', 'r1', '2026-11-01 09:30:00'), ('newcomers', 'r3', '2026-11-02 12:00:00'),
        ('eu', 'r3', '2026-11-02 12:00:00')""")


def test_datasets_and_their_items(ledger: duckdb.DuckDBPyConnection) -> None:
    add_items(ledger)
    assert datasets.datasets(ledger) == [
        {"name": "eu", "items": 1, "first": "2026-11-02T12:00:00", "last": "2026-11-02T12:00:00"},
        {
            "name": "newcomers",
            "items": 2,
            "first": "2026-11-01T09:30:00",
            "last": "2026-11-02T12:00:00",
        },
    ]
    assert datasets.dataset(ledger, "newcomers") == [
        {"request_id": "r1", "time": "2026-11-01T09:30:00", "user": "alice", "group": "acme",
         "model": "openai/gpt-4o", "input": {"messages": [{"role": "user", "content": "hi"}]},
         "output": "hello"},
        {"request_id": "r3", "time": "2026-11-02T12:00:00", "user": "bob", "group": "acme",
         "model": "openai/gpt-4o", "input": {"input": "ping"}, "output": "pong"},
    ]  # fmt: skip
    with pytest.raises(NotFoundError, match=r'no dataset named "nope" \(datasets: eu, newcomers\)'):
        datasets.dataset(ledger, "nope")


# --- pruning --------------------------------------------------------------------------


def test_prune_dry_run_counts_and_prune_deletes_with_content_and_rollup(
    ledger: duckdb.DuckDBPyConnection,
) -> None:
    add_items(ledger)
    # r1 (Nov 1) and r3 (Nov 2) are kept 1 day; r6 (Nov 3) 30 days.
    ledger.execute("UPDATE requests SET retain_days = 1 WHERE id IN ('r1', 'r3')")
    ledger.execute("UPDATE requests SET retain_days = 30 WHERE id = 'r6'")
    now = "2026-11-03T12:30:00"
    expected = {
        "requests": 2, "content": 2, "dataset_items": 3, "first": "2026-11-01T09:30:00",
        "last": "2026-11-02T12:00:00", "now": now,
    }  # fmt: skip
    assert retention.prune(ledger, now=now, dry_run=True) == {**expected, "dry_run": True}
    assert reports.status(ledger)["requests"] == 7
    assert retention.prune(ledger, now=now) == {**expected, "dry_run": False}
    ids = [r[0] for r in ledger.execute("SELECT id FROM requests ORDER BY id").fetchall()]
    assert ids == ["r2", "r4", "r5", "r6", "r7"]
    assert ledger.execute("SELECT count(*) FROM content").fetchone() == (0,)
    assert ledger.execute("SELECT count(*) FROM dataset_items").fetchone() == (0,)
    # The rollup was rebuilt: whole-day reports agree with the raw rows left.
    for by in ("user", "group", "model"):
        assert reports.top(ledger, by=by, limit=100)["rows"] == raw_top(ledger, by, None, None)
    assert retention.prune(ledger, now=now)["requests"] == 0


# --- export ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_writes_every_row_in_the_span(
    ledger: duckdb.DuckDBPyConnection, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    result = export.export(ledger, fmt, str(out), since="2026-11-02T00:00:00")
    assert result == {"rows": 5, "path": str(out), "format": fmt}
    reader = {"csv": "read_csv", "parquet": "read_parquet", "json": "read_json"}[fmt]
    back = duckdb.sql(
        f"SELECT id, input_tokens, cost_usd::DECIMAL(18, 10) FROM {reader}('{out}') ORDER BY id"
    ).fetchall()
    assert back == [
        ("r3", 500, Decimal("0.00225")),
        ("r4", 300, None),
        ("r5", 100, Decimal("0.000075")),
        ("r6", 4000, Decimal("0.02")),
        ("r7", 0, Decimal("0")),
    ]


def test_export_json_is_one_object_per_line(
    ledger: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    export.export(ledger, "json", str(out), since="2026-11-03T08:00:00")
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["r6", "r7"]


def test_export_refuses_a_relative_path(ledger: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(UsageError, match="the export path must be absolute: out.csv"):
        export.export(ledger, "csv", "out.csv")


@duckdb_only  # Postgres's writers never fold: each batch goes into the rollup at once
def test_reports_count_the_rows_the_writer_has_not_folded_yet(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """The writer folds rows into the rollup every few seconds (``ledger.rollup``); until
    then the reports add them to the rollup's whole days, so answers never lag."""
    insert(con, random_rows(3000, seed=7))
    rebuild_rollup(con)
    late = [(f"late{r[0]}", *r[1:]) for r in random_rows(1500, seed=8)]
    insert(con, late)  # as if appended by the writer: numbered, not folded
    con.execute("UPDATE requests SET seq = CAST(id[6:] AS BIGINT) + 1 WHERE id LIKE 'lateq%'")
    assert con.execute("SELECT sum(requests) FROM usage_daily").fetchone() == (3000,)
    for since, until in random_spans(random.Random(12), 25):
        for by in ("user", "model"):
            got = reports.top(con, by=by, since=since, until=until, limit=100)["rows"]
            assert got == raw_top(con, by, since, until), (by, since, until)
    shown = reports.show(con, kind="user", id="u1", since="2026-09-30")
    by_day = con.execute(
        "SELECT ts::DATE, count(*) FROM requests WHERE user_id = 'u1' GROUP BY 1"
    ).fetchall()
    assert {d["day"]: d["requests"] for d in shown["daily"] if d["requests"]} == {
        day.isoformat(): n for day, n in by_day
    }


# --- cache reads and writes -----------------------------------------------------------

CLAUDE = "claude-sonnet-4-20250514"
# $3 input, $0.30 cache read, $3.75 cache write, $15 output per million:
# c1: 5,000 x 3 + 3,000 x 0.3 + 2,000 x 3.75 + 500 x 15 = 30,900 -> 0.0309
# c2: 1,000 x 3 + 4,000 x 0.3 + 100 x 15 = 5,700 -> 0.0057
CACHED_ROWS = [
    ("c1", "2026-11-05 10:00:00", "alice", None, "anthropic", CLAUDE, 10_000, 500, "0.0309", "ok"),
    ("c2", "2026-11-06 10:00:00", "alice", None, "anthropic", CLAUDE, 5_000, 100, "0.0057", "ok"),
]


@pytest.fixture
def cached_ledger(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    insert(con, CACHED_ROWS)
    con.execute(
        "UPDATE requests SET cached_tokens = 3000, cache_write_tokens = 2000 WHERE id = 'c1'"
    )
    con.execute("UPDATE requests SET cached_tokens = 4000 WHERE id = 'c2'")
    rebuild_rollup(con)
    return con


def test_reports_carry_cache_reads_and_writes_from_the_rollup_and_the_raw_rows(
    cached_ledger: duckdb.DuckDBPyConnection,
) -> None:
    # Nov 5 is a whole day (the rollup), Nov 6 until noon a partial one (raw rows).
    span = {"since": "2026-11-05T00:00:00", "until": "2026-11-06T12:00:00"}
    model = f"anthropic/{CLAUDE}"
    both = {"cached": 7000, "writes": 2000}
    shown = reports.show(cached_ledger, "user", "alice", **span)
    assert {k: v for k, v in shown.items() if k not in ("models", "groups", "daily")} == {
        **row("user", "alice", 2, 15_000, 600, 0.0366, **both),
        "flagged_requests": 0,
    }
    assert shown["models"] == [row("model", model, 2, 15_000, 600, 0.0366, **both)]
    assert shown["daily"] == [
        row("day", "2026-11-05", 1, 10_000, 500, 0.0309, cached=3000, writes=2000),
        row("day", "2026-11-06", 1, 5_000, 100, 0.0057, cached=4000),
    ]
    top = reports.top(cached_ledger, by="model", **span)
    assert top["rows"] == [row("model", model, 2, 15_000, 600, 0.0366, **both)]
    assert [
        (b["bucket"], b["cache_write_tokens"])
        for b in reports.timeline(cached_ledger, every="hour", **span)
        if b["requests"]
    ] == [("2026-11-05T10:00:00", 2000), ("2026-11-06T10:00:00", 0)]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_carry_cache_reads_and_writes(
    cached_ledger: duckdb.DuckDBPyConnection, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    export.export(cached_ledger, fmt, str(out))
    if fmt == "csv":
        with out.open() as f:
            lines = list(csv.DictReader(f))
    else:
        lines = [json.loads(line) for line in out.read_text().splitlines()]
    got = [
        (r["id"], int(r["input_tokens"]), int(r["cached_tokens"]), int(r["cache_write_tokens"]))
        for r in lines
    ]
    assert got == [("c1", 10_000, 3000, 2000), ("c2", 5_000, 4000, 0)]


@pytest.mark.parametrize("con", ["postgres"], indirect=True)
def test_an_export_of_a_postgres_ledger_is_one_part(ledger: duckdb.DuckDBPyConnection) -> None:
    assert export.export_plan(ledger) == {"rows": 7, "first_rowid": None, "last_rowid": None}
