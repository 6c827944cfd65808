"""``waystone usage spikes`` with a spike rule in the config (the rule replayed over a
hand-made ledger, request by request, as the daemon's trigger would have seen it), and
the requests it flagged in ``usage top --flagged`` and ``usage show``.

steady made 2 requests at 08:00, 09:00 and 10:00, then 6 at 11:30:00-05.  The rule's
window is 1h and its baseline 4h: at 11:30 the window starts at minute 10:30, so the
baseline before it holds the three earlier hours, 6 requests, an average of 2; factor 2
puts the bar at 4.  The k-th request of 11:30 sees k - 1 in the window: the 5th (id s5,
at 11:30:04) is the first to fire, and the 6th fires too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.rollup import rebuild_rollup

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
CONFIG = """
[rules.runaway]
spike = { metric = "requests", window = "1h", factor = 2, baseline = "4h", min = 3 }
action = "flag"
[rulesets.watch]
when = "always"
rules = ["runaway"]
"""


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("waystone_cli.commands.usage._now", lambda: NOW)


@pytest.fixture
def ledger(waystone_home: Path, write_config: Callable[[str], Path]) -> Path:
    write_config(CONFIG)
    path = waystone_home / "ledger.duckdb"
    con = open_readwrite(path)
    times = [f"2026-11-03 {h:02d}:00:0{i}" for h in (8, 9, 10) for i in range(2)]
    times += [f"2026-11-03 11:30:0{i}" for i in range(6)]
    ids = [f"h{i}" for i in range(6)] + [f"s{i}" for i in range(1, 7)]
    for request_id, ts in zip(ids, times, strict=True):
        # s5 and s6 are the requests the daemon flagged (see the module docstring).
        con.execute(
            "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens, "
            "cost_usd, flagged) VALUES (?, ?, 'steady', 'chat/completions', 200, 'ok', 10, "
            "0.0001, ?)",
            [request_id, ts, request_id in ("s5", "s6")],
        )
    con.execute(
        "INSERT INTO requests (id, ts, user_id, route, status, outcome, input_tokens, "
        "cost_usd) VALUES ('q1', '2026-11-03 11:40:00', 'quiet', 'chat/completions', 200, "
        "'ok', 10, 0.0001)"
    )
    con.execute(  # the users as the daemon records them when it sees them
        "INSERT INTO users (id, first_seen, last_seen) SELECT user_id, min(ts), max(ts) "
        "FROM requests GROUP BY ALL"
    )
    rebuild_rollup(con)
    con.close()
    return path


SPIKES = """\
1 spikes of runaway
user     window from        fired at           value   baseline   factor   requests
───────────────────────────────────────────────────────────────────────────────────
steady   2026-11-03 11:00   2026-11-03 11:30       4          2     2.0x          2
"""


def test_spikes_replay_the_rule_and_name_the_first_request(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "spikes", "--since", "2026-11-03T11:00", "--json")
    assert json.loads(run.stdout) == [
        {
            "user": "steady",
            "rule": "runaway",
            "metric": "requests",
            "bucket": "2026-11-03T11:00:00",
            "at": "2026-11-03T11:30:04",
            "request": "s5",
            "value": 4.0,
            "baseline": 2.0,
            "factor": 2.0,
            "requests": 2,
        }
    ]
    table = cli("usage", "spikes", "--since", "2026-11-03T11:00")
    assert (table.exit_code, table.stdout) == (0, SPIKES)


def test_spikes_of_a_rule_without_a_spike_trigger_is_misuse(
    cli: Cli, ledger: Path, write_config: Callable[[str], Path]
) -> None:
    write_config(CONFIG + '[rules.plain]\naction = "flag"\n')
    run = cli("usage", "spikes", "--rule", "plain")
    assert (run.exit_code, run.stderr) == (2, 'error: rule "plain" has no spike trigger\n')


TOP_FLAGGED = """\
Top 1 of 1 users by requests, flagged requests only, 2026-11-03 00:00 → now (UTC)
user          requests   input   output   tokens        cost
────────────────────────────────────────────────────────────
steady               2      20        0       20   $0.000200
{blank}
all 1 users          2      20        0       20   $0.000200
""".format(blank=" " * 60)


def test_top_flagged_ranks_only_the_flagged_requests(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--flagged", "--metric", "requests", "--since", "2026-11-03")
    assert (run.exit_code, run.stdout) == (0, TOP_FLAGGED)
    every = json.loads(cli("usage", "top", "--metric", "requests", "--json").stdout)
    assert [(r["user"], r["requests"]) for r in every] == [("steady", 12), ("quiet", 1)]


def test_show_counts_the_flagged_requests(cli: Cli, ledger: Path) -> None:
    shown = json.loads(cli("usage", "show", "user", "steady", "--json").stdout)
    assert (shown["requests"], shown["flagged_requests"]) == (12, 2)
    lines = cli("usage", "show", "user", "steady").stdout.splitlines()
    assert "2 flagged request(s)" in lines
    quiet = cli("usage", "show", "user", "quiet").stdout.splitlines()
    assert not any("flagged" in line for line in quiet)
