"""``waystone usage``: whole tables, charts and JSON from a small hand-made ledger.

The ledger is the one of tests/unit/ledger/test_reports.py (7 requests over Nov 1-3 2026, one
of them unpriced); "now" is frozen at 2026-11-03 12:00 UTC.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.cli.conftest import Cli
from tests.servers import PostgresServer
from tests.unit.ledger.test_reports import ROWS, add_items, insert
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.postgres import open_postgres
from waystone_cli.ledger.rollup import rebuild_rollup

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
# A test of what runs on DuckDB only, of the DuckDB file itself, or that writes a
# config of its own.
duckdb_only = pytest.mark.parametrize("ledger", ["duckdb"], indirect=True)


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("waystone_cli.commands.usage._now", lambda: NOW)


@pytest.fixture(params=["duckdb", "postgres"])
def ledger(request: pytest.FixtureRequest, waystone_home: Path) -> Path:
    """The hand-made ledger in the DuckDB file, or in Postgres with ``[ledger] url`` in
    the config: the commands print the same, with no daemon running."""
    path = waystone_home / "ledger.duckdb"
    con: Any
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_server").url
        (waystone_home / "config.toml").write_text(f'[ledger]\nurl = "{url}"\n')
        con = open_postgres(url)
    else:
        con = open_readwrite(path)
    insert(con, ROWS)
    add_items(con)
    con.execute(
        "INSERT INTO links VALUES ('alice', 'acme', '2026-11-01 09:30:00'), "
        "('bob', 'acme', '2026-11-02 12:00:00')"
    )
    # The users and groups the daemon records as it sees them in the ROWS.
    for table in ("users", "groups"):
        column = "user_id" if table == "users" else "group_id"
        con.execute(
            f"INSERT INTO {table} (id, first_seen, last_seen) SELECT {column}, min(ts), max(ts) "
            f"FROM requests WHERE {column} IS NOT NULL GROUP BY 1"
        )
    rebuild_rollup(con)
    con.close()
    return path


TOP = """\
Top 4 of 4 users by cost, 2026-11-01 00:00 → now (UTC)
user          requests   input   output   tokens          cost   unpriced
─────────────────────────────────────────────────────────────────────────
carol                1   4,000    1,000    5,000     $0.020000          0
alice                3   3,000    1,200    4,200     $0.005400          0
bob                  2     800      150      950   $0.002250 *          1
(anonymous)          1     100      100      200     $0.000075          0
                                                                         
all 4 users          7   7,900    2,450   10,350   $0.027725 *          1
* includes unpriced requests: their cost is unknown and not counted
"""  # noqa: W293


def test_top_prints_the_whole_table_with_unpriced_marked(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--since", "2026-11-01")
    assert (run.exit_code, run.stdout, run.stderr) == (0, TOP, "")


def test_top_json_is_an_array_keyed_by_the_dimension(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--by", "model", "--metric", "tokens", "--since", "3d", "--json")
    assert run.exit_code == 0
    assert json.loads(run.stdout) == [
        {"model": "openai/gpt-4o", "requests": 4, "input_tokens": 5500, "output_tokens": 1300,
         "total_tokens": 6800, "cost_usd": 0.02675, "cached_tokens": 0,
         "cache_write_tokens": 0, "unpriced_requests": 0},
        {"model": "openai/gpt-4o-mini", "requests": 2, "input_tokens": 2100,
         "output_tokens": 1100, "total_tokens": 3200, "cost_usd": 0.000975,
         "cached_tokens": 0, "cache_write_tokens": 0, "unpriced_requests": 0},
        {"model": "local/llama", "requests": 1, "input_tokens": 300, "output_tokens": 50,
         "total_tokens": 350, "cost_usd": None, "cached_tokens": 0, "cache_write_tokens": 0,
         "unpriced_requests": 1},
    ]  # fmt: skip


def test_top_on_an_empty_ledger_says_so(cli: Cli, waystone_home: Path) -> None:
    run = cli("usage", "top")
    expected = (
        f"The ledger is empty: no request recorded yet ({waystone_home / 'ledger.duckdb'}).\n"
    )
    assert (run.exit_code, run.stdout) == (0, expected)
    assert json.loads(cli("usage", "top", "--json").stdout) == []


def test_top_on_an_empty_postgres_ledger_names_it_without_its_password(
    cli: Cli, waystone_home: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.url.replace("@", ":not-the-password@")  # trust auth ignores it
    (waystone_home / "config.toml").write_text(f'[ledger]\nurl = "{url}"\n')
    run = cli("usage", "top")
    shown = url.replace(":not-the-password@", ":***@")
    assert (run.exit_code, run.stdout) == (
        0,
        f"The ledger is empty: no request recorded yet ({shown}).\n",
    )


def test_top_with_nothing_in_the_period_says_so(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--since", "1h")
    assert run.stdout == "No requests between 2026-11-03T11:00:00 and now.\n"


SHOW_GROUP = """\
Group acme, the first request → now (UTC)
group   requests   input   output   tokens          cost   unpriced
───────────────────────────────────────────────────────────────────
acme           4   1,800      350    2,150   $0.006750 *          1
* includes unpriced requests: their cost is unknown and not counted

model           requests   input   output   tokens        cost   unpriced
─────────────────────────────────────────────────────────────────────────
openai/gpt-4o          3   1,500      300    1,800   $0.006750          0
local/llama            1     300       50      350    unpriced          1

user    requests   input   output   tokens          cost   unpriced
───────────────────────────────────────────────────────────────────
alice          2   1,000      200    1,200     $0.004500          0
bob            2     800      150      950   $0.002250 *          1

Daily cost (USD)
$0.004500 ┤███
          ┤███
          ┤██████
        0 ┤██████
          └─────────
           2026-11-01 2026-11-03
"""


def test_show_group_prints_totals_models_members_and_a_daily_chart(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "show", "group", "acme")
    assert (run.exit_code, run.stdout) == (0, SHOW_GROUP)


def test_show_user_json_is_one_object(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "show", "user", "carol", "--since", "2026-11-02", "--json")
    usage = {"requests": 1, "input_tokens": 4000, "output_tokens": 1000, "total_tokens": 5000,
             "cost_usd": 0.02, "cached_tokens": 0, "cache_write_tokens": 0, "unpriced_requests": 0}  # fmt: skip
    assert json.loads(run.stdout) == {
        "user": "carol",
        **usage,
        "models": [{"model": "openai/gpt-4o", **usage}],
        "groups": [{"group": "beta", **usage}],
        "flagged_requests": 0,
        "daily": [
            {"day": "2026-11-02", "requests": 0, "input_tokens": 0, "output_tokens": 0,
             "total_tokens": 0, "cost_usd": 0.0, "cached_tokens": 0, "cache_write_tokens": 0, "unpriced_requests": 0},
            {"day": "2026-11-03", **usage},
        ],
    }  # fmt: skip


def test_show_a_user_never_declared_nor_seen_says_so(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "show", "user", "zed")
    assert (run.exit_code, run.stdout, run.stderr) == (
        1,
        "",
        'error: no user named "zed": not declared in the config, never seen in traffic\n',
    )


@duckdb_only
def test_show_a_declared_user_without_requests_says_no_requests(
    cli: Cli, ledger: Path, write_config
) -> None:
    write_config("[users.zed]\n")
    run = cli("usage", "show", "user", "zed")
    assert (run.exit_code, run.stdout) == (0, "No requests by user zed in this period.\n")


@pytest.mark.parametrize(
    "args",
    [
        ("usage", "timeline", "--user", "zed"),
        ("usage", "top", "--group", "nope"),
        ("usage", "export", "--format", "csv", "--user", "zed"),
        ("usage", "show", "group", "nope"),
    ],
)
def test_every_usage_lookup_of_an_unknown_id_exits_1(
    cli: Cli, ledger: Path, args: tuple[str, ...]
) -> None:
    run = cli(*args)
    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr.startswith("error: no ")


TOP_OF_ALICE_BY_MODEL = """\
Top 2 of 2 models by cost, 2026-11-01 00:00 → now (UTC)
model                requests   input   output   tokens        cost
───────────────────────────────────────────────────────────────────
openai/gpt-4o               2   1,000      200    1,200   $0.004500
openai/gpt-4o-mini          1   2,000    1,000    3,000   $0.000900
                                                                   
all 2 models                3   3,000    1,200    4,200   $0.005400
"""  # noqa: W293


def test_top_of_one_user_by_model(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--by", "model", "--user", "alice", "--since", "2026-11-01")
    assert (run.exit_code, run.stdout) == (0, TOP_OF_ALICE_BY_MODEL)


def test_top_of_one_model_by_user(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--model", "gpt-4o-mini", "--since", "2026-11-01", "--json")
    assert [(r["user"], r["requests"]) for r in json.loads(run.stdout)] == [
        ("alice", 1),
        (None, 1),
    ]


TIMELINE_HOURS = """\
Tokens per hour, all, 2026-11-03 04:00 → now (UTC)
5,000 ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
      ┤            ███
    0 ┤      ▃▃▃   ███
      └────────────────────────
       2026-11-03 04:00 2026-11-03 11:00
8 hours, total 5,200, peak 5,000 at 2026-11-03 08:00
"""


def test_timeline_by_hour_runs_to_now(cli: Cli, ledger: Path) -> None:
    run = cli(
        "usage", "timeline", "--every", "hour", "--since", "2026-11-03T04:00", "--metric", "tokens"
    )
    assert (run.exit_code, run.stdout) == (0, TIMELINE_HOURS)


def test_timeline_json_for_one_user(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "timeline", "--user", "bob", "--since", "2026-11-02", "--json")
    assert json.loads(run.stdout) == [
        {"bucket": "2026-11-02T00:00:00", "requests": 2, "input_tokens": 800, "output_tokens": 150,
         "total_tokens": 950, "cost_usd": 0.00225, "cached_tokens": 0, "cache_write_tokens": 0, "unpriced_requests": 1},
        {"bucket": "2026-11-03T00:00:00", "requests": 0, "input_tokens": 0, "output_tokens": 0,
         "total_tokens": 0, "cost_usd": 0.0, "cached_tokens": 0, "cache_write_tokens": 0, "unpriced_requests": 0},
    ]  # fmt: skip


def test_timeline_takes_one_filter_at_most(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "timeline", "--user", "bob", "--group", "acme")
    assert (run.exit_code, run.stderr) == (
        2,
        "error: give at most one of --user, --group and --model\n",
    )


def test_spikes_none_in_a_quiet_ledger(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "spikes")
    assert run.stdout == "No spikes: no hour stands out from its user's baseline.\n"
    assert json.loads(cli("usage", "spikes", "--json").stdout) == []


def test_spikes_help_states_the_rule(cli: Cli) -> None:
    text = " ".join(cli("usage", "spikes", "--help").stdout.split())
    assert "median + 5 x max(1.4826 x MAD, 10% of median) and >= 2 x median" in text


def test_bad_since_is_misuse(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--since", "yesterday")
    assert (run.exit_code, run.stderr) == (
        2,
        'error: invalid time "yesterday" (a duration like 30d or a date like 2026-11-01)\n',
    )


def test_export_csv_to_stdout(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "export", "--format", "csv", "--since", "2026-11-03")
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    got = [(r["id"], r["user_id"], r["input_tokens"], r["cost_usd"]) for r in rows]
    assert got == [
        ("r5", "", "100", "0.0000750000"),
        ("r6", "carol", "4000", "0.0200000000"),
        ("r7", "alice", "0", "0.0000000000"),
    ]


def test_export_of_one_user_for_billing(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "export", "--format", "csv", "--user", "bob")
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [(r["id"], r["user_id"]) for r in rows] == [("r3", "bob"), ("r4", "bob")]


def test_export_of_one_group_in_parts_is_the_whole_export(
    cli: Cli, ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of 2 rowids: the acme rows come out in 4 parts, joined in order, one header."""
    monkeypatch.setattr("waystone_cli.commands.export.PART_ROWS", 2)
    for fmt in ("csv", "parquet"):
        out = tmp_path / f"acme.{fmt}"
        run = cli("usage", "export", "--format", fmt, "--group", "acme", "--out", str(out))
        assert run.exit_code == 0
        assert run.stderr.endswith(f"Exported 4 rows to {out}.\n")
        got = duckdb.sql(f"SELECT id FROM '{out}'").fetchall()
        assert got == [("r1",), ("r3",), ("r4",), ("r7",)]


def test_a_cursor_export_writes_every_row_once(cli: Cli, ledger: Path, tmp_path: Path) -> None:
    cursor = tmp_path / "cursor.json"
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    for out in (first, second):
        run = cli("usage", "export", "--format", "csv", "--cursor", str(cursor), "--out", str(out))
        assert run.exit_code == 0, run.stderr
    assert [r["id"] for r in csv.DictReader(first.open())] == [f"r{i}" for i in range(1, 8)]
    assert list(csv.DictReader(second.open())) == []


def test_a_cursor_export_of_postgres_takes_the_rows_written_since(
    cli: Cli, waystone_home: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Two instances' writers, as the daemon's would: each batch its own transaction."""
    url = postgres_server.url
    (waystone_home / "config.toml").write_text(f'[ledger]\nurl = "{url}"\n')
    cursor = tmp_path / "cursor.json"

    def run(n: int) -> list[str]:
        out = tmp_path / f"{n}.jsonl"
        result = cli("usage", "export", "--format", "cloudevents", "--cursor", str(cursor),
                     "--out", str(out))  # fmt: skip
        assert result.exit_code == 0, result.stderr
        return [json.loads(line)["id"] for line in out.read_text().splitlines()]

    for rows in (ROWS[:2], ROWS[2:4]):
        con = open_postgres(url)
        insert(con, rows)
        con.close()
    assert run(1) == ["r1", "r2", "r3", "r4"]
    con = open_postgres(url)
    insert(con, ROWS[4:])
    con.close()
    assert run(2) == ["r5", "r6", "r7"]
    assert run(3) == []


def test_export_parquet_to_a_file(cli: Cli, ledger: Path, tmp_path: Path) -> None:
    out = tmp_path / "usage.parquet"
    run = cli("usage", "export", "--format", "parquet", "--out", str(out))
    assert (run.exit_code, run.stdout) == (0, "")
    assert "Exported 7 rows to" in run.stderr
    assert duckdb.sql(f"SELECT count(*), sum(input_tokens) FROM '{out}'").fetchall() == [(7, 7900)]


def test_export_parquet_needs_a_file(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "export", "--format", "parquet")
    assert (run.exit_code, run.stderr) == (2, "error: parquet goes to a file: give --out FILE\n")


DATASETS = """\
dataset     items              first               last
───────────────────────────────────────────────────────
eu              1   2026-11-02 12:00   2026-11-02 12:00
newcomers       2   2026-11-01 09:30   2026-11-02 12:00
"""

DATASET = """\
time               user    group   model           input               output
─────────────────────────────────────────────────────────────────────────────
2026-11-01 09:30   alice   acme    openai/gpt-4o   hi                  hello 
2026-11-02 12:00   bob     acme    openai/gpt-4o   {"input": "ping"}   pong  
"""  # noqa: W291


def test_datasets_and_one_dataset(cli: Cli, ledger: Path) -> None:
    assert cli("usage", "datasets").stdout == DATASETS
    assert cli("usage", "dataset", "newcomers").stdout == DATASET
    items = json.loads(cli("usage", "dataset", "eu", "--json").stdout)
    assert [(i["request_id"], i["user"], i["output"]) for i in items] == [("r3", "bob", "pong")]
    run = cli("usage", "dataset", "nope")
    assert (run.exit_code, run.stderr) == (
        1,
        'error: no dataset named "nope" (datasets: eu, newcomers)\n',
    )


@duckdb_only
def test_prune_dry_run_then_prune(cli: Cli, ledger: Path) -> None:
    con = duckdb.connect(str(ledger))
    con.execute("UPDATE requests SET retain_days = 1 WHERE id IN ('r1', 'r2')")
    con.close()
    run = cli("usage", "prune", "--dry-run")
    assert run.stdout == (
        "Would delete 2 requests (2026-11-01 09:30 → 2026-11-01 23:59), "
        "1 stored contents and 1 dataset items.\n"
    )
    run = cli("usage", "prune")
    assert run.stdout.startswith("Deleted 2 requests")
    top = json.loads(cli("usage", "top", "--since", "2026-11-01", "--json").stdout)
    assert [(r["user"], r["requests"]) for r in top] == [
        ("carol", 1),
        ("bob", 2),
        (None, 1),
        ("alice", 1),
    ]
    assert (
        cli("usage", "prune").stdout == "Nothing to prune: no row has outlived its retain rule.\n"
    )


@duckdb_only  # parts cut by DuckDB's rowid
def test_export_progress_counts_rows_and_shows_the_percentage(
    cli: Cli, ledger: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    seen = io.StringIO()
    monkeypatch.setattr("waystone_cli.commands.export.PART_ROWS", 2)
    monkeypatch.setattr(
        "waystone_cli.render.err_console",
        lambda: Console(file=seen, force_terminal=True, width=100, color_system=None),
    )
    run = cli("usage", "export", "--format", "csv", "--out", str(tmp_path / "all.csv"))
    assert run.exit_code == 0
    frames = seen.getvalue()
    # Parts of 2 rowids: 2, 4, 6 then 7 of the 7 rows.
    for done, percent in ((2, 29), (4, 57), (6, 86), (7, 100)):
        assert re.search(rf"{done}/7 rows +{percent}%", frames)


@duckdb_only  # it exports over the config file
def test_export_never_overwrites_a_file_without_force(
    cli: Cli, ledger: Path, waystone_home: Path
) -> None:
    config = waystone_home / "config.toml"
    config.write_text("[server]\n")
    run = cli("usage", "export", "--format", "csv", "--out", str(config))
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr == f"error: {config} exists: give --force to overwrite it\n"
    assert config.read_text() == "[server]\n"
    run = cli("usage", "export", "--format", "csv", "--out", str(config), "--force")
    assert run.exit_code == 0
    assert len(list(csv.DictReader(io.StringIO(config.read_text())))) == 7


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_an_export_is_readable_by_its_owner_only(
    cli: Cli, ledger: Path, tmp_path: Path, fmt: str
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / f"usage.{fmt}"
    assert cli("usage", "export", "--format", fmt, "--out", str(out)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in folder.iterdir()] == [f"usage.{fmt}"]  # nothing staged is left


@duckdb_only
def test_a_ledger_from_a_newer_waystone_is_refused_in_one_line(cli: Cli, ledger: Path) -> None:
    con = duckdb.connect(str(ledger))
    con.execute("INSERT INTO _migrations VALUES ('m099_tenants', now()::TIMESTAMP)")
    con.close()
    run = cli("usage", "top")
    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (
        f"error: the ledger {ledger} was written by a newer waystone (migrations this "
        "version does not know: m099_tenants); upgrade waystone to use it\n"
    )
