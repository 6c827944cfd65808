from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from waystone_cli.ledger import access
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.pricing_queries import QUERIES, unpriced_models

CONFIG = """
[providers.openai]
base_url = "https://api.openai.com/v1"
models = ["gpt-4o"]

[providers.local]
kind = "mock"
models = ["mock-small", "mock-large"]

[prices."local/mock-large"]
input = 1.0
output = 4.0
"""


@pytest.fixture(autouse=True)
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the lead adds QUERIES to ``access.registry()``, put it there for these tests."""
    registry = access.registry
    monkeypatch.setattr(access, "registry", lambda: {**registry(), **QUERIES})


def seed(ledger: Path) -> None:
    con = open_readwrite(ledger)
    rows = [
        ("r1", "2026-11-01 09:00:00", "local", "mock-small", False),
        ("r2", "2026-11-01 10:00:00", "local", "mock-small", False),
        ("r3", "2026-11-02 08:15:00", "local", "mock-large", False),
        ("r4", "2026-11-02 08:30:00", "openai", "gpt-4o", True),
    ]
    con.executemany(
        "INSERT INTO requests (id, ts, provider, model, route, status, outcome, priced) "
        "VALUES (?, ?, ?, ?, 'chat/completions', 200, 'ok', ?)",
        rows,
    )
    con.close()


def test_unpriced_models_counts_unpriced_requests_per_model(waystone_home: Path) -> None:
    seed(waystone_home / "ledger.duckdb")
    con = open_readwrite(waystone_home / "ledger.duckdb")
    try:
        assert unpriced_models(con) == [
            {
                "provider": "local",
                "model": "mock-small",
                "requests": 2,
                "first_seen": "2026-11-01T09:00:00",
                "last_seen": "2026-11-01T10:00:00",
            },
            {
                "provider": "local",
                "model": "mock-large",
                "requests": 1,
                "first_seen": "2026-11-02T08:15:00",
                "last_seen": "2026-11-02T08:15:00",
            },
        ]
    finally:
        con.close()


def test_prices_check_json_lists_seen_and_configured_unpriced_models(
    cli: Cli, write_config: Callable[[str], Path], waystone_home: Path
) -> None:
    write_config(CONFIG)
    seed(waystone_home / "ledger.duckdb")
    run = cli("prices", "check", "--json")
    assert (run.exit_code, run.stderr) == (0, "")
    assert json.loads(run.stdout) == {
        "seen": [
            {
                "provider": "local",
                "model": "mock-small",
                "requests": 2,
                "first_seen": "2026-11-01T09:00:00",
                "last_seen": "2026-11-01T10:00:00",
                "priced_now": False,
            },
            {
                "provider": "local",
                "model": "mock-large",
                "requests": 1,
                "first_seen": "2026-11-02T08:15:00",
                "last_seen": "2026-11-02T08:15:00",
                "priced_now": True,
            },
        ],
        "configured": [{"provider": "local", "model": "mock-small"}],
    }


def test_prices_check_prints_both_tables(
    cli: Cli, write_config: Callable[[str], Path], waystone_home: Path
) -> None:
    write_config(CONFIG)
    seed(waystone_home / "ledger.duckdb")
    run = cli("prices", "check")
    assert run.exit_code == 0
    assert run.stdout == (
        "Unpriced models seen in traffic:\n"
        "provider   model        unpriced requests   last seen          now     \n"
        "───────────────────────────────────────────────────────────────────────\n"
        "local      mock-small   2                   2026-11-01 10:00   unpriced\n"
        "local      mock-large   1                   2026-11-02 08:15   priced  \n"
        "Configured models with no price:\n"
        "provider   model     \n"
        "─────────────────────\n"
        "local      mock-small\n"
        'Add prices in USD per million tokens, e.g. [prices."provider/model"] input = 1.0, output = 4.0\n'
    )


def test_prices_check_says_so_when_everything_is_priced(
    cli: Cli, write_config: Callable[[str], Path]
) -> None:
    write_config(
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\nmodels = ["gpt-4o", "o3"]\n'
    )
    run = cli("prices", "check")
    assert (run.exit_code, run.stdout) == (
        0,
        "Every model seen in traffic or configured has a price.\n",
    )
