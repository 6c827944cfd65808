"""``usage top`` and ``usage show`` at 80 columns: the key column and the numbers are never
dropped or cut.  Piped (a real process, ``COLUMNS=80``, stdout a pipe) every value prints
whole, the line as long as it needs; on a terminal only the key column folds, at ``-``,
``/``, ``@`` or ``.`` where it can."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.unit.ledger.test_reports import insert
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.rollup import rebuild_rollup

LONG_USER = "customer-with-a-long-identifier@example.com"
LONG_MODEL = "gpt-4o-mini-2024-07-18-with-a-long-name"
ROWS = [
    ("r1", "2026-11-01 09:30:00", LONG_USER, None, "openai", LONG_MODEL, 12_345_678, 1_234_567,
     "12345.6789", "ok"),
    ("r2", "2026-11-01 10:30:00", "bob", None, "local", "llama", 300, 50, None, "ok"),
]  # fmt: skip

PIPED_TOP = """\
Top 2 of 2 users by cost, 2026-11-01 00:00 → now (UTC)
user                                          requests        input      output       tokens             cost   unpriced
────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
customer-with-a-long-identifier@example.com          1   12,345,678   1,234,567   13,580,245     $12,345.6789          0
bob                                                  1          300          50          350         unpriced          1
                                                                                                                        
all 2 users                                          2   12,345,978   1,234,617   13,580,595   $12,345.6789 *          1
* includes unpriced requests: their cost is unknown and not counted
"""  # noqa: W293, E501

TERMINAL_TOP = """\
Top 2 of 2 users by cost, 2026-11-01 00:00 → now (UTC)
user           requests        input      output       tokens             cost   unpriced
─────────────────────────────────────────────────────────────────────────────────────────
customer-             1   12,345,678   1,234,567   13,580,245     $12,345.6789          0
with-a-long-                                                                             
identifier@                                                                              
example.com                                                                              
bob                   1          300          50          350         unpriced          1
                                                                                         
all 2 users           2   12,345,978   1,234,617   13,580,595   $12,345.6789 *          1
* includes unpriced requests: their cost is unknown and not counted
"""  # noqa: W291, W293


@pytest.fixture
def ledger(waystone_home: Path) -> Path:
    path = waystone_home / "ledger.duckdb"
    con = open_readwrite(path)
    insert(con, ROWS)
    rebuild_rollup(con)
    con.close()
    return path


def _waystone(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, "-m", "waystone_cli.main", *args],
        env={**environ, "COLUMNS": "80", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_piped_at_80_columns_every_value_prints_whole(ledger: Path) -> None:
    run = _waystone("usage", "top", "--since", "2026-11-01")
    assert (run.returncode, run.stdout) == (0, PIPED_TOP)


def test_on_an_80_column_terminal_only_the_key_folds(ledger: Path) -> None:
    # The numbers take 72 columns: the key folds to KEY_MIN, the line is as long as they need.
    run = _waystone("usage", "top", "--since", "2026-11-01", TTY_COMPATIBLE="1")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    assert (run.returncode, plain) == (0, TERMINAL_TOP)


def test_a_long_model_name_folds_at_its_dashes_on_a_terminal(ledger: Path) -> None:
    run = _waystone("usage", "top", "--by", "model", "--since", "2026-11-01",
                    TTY_COMPATIBLE="1")  # fmt: skip
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    keys = [line.split("  ")[0] for line in plain.splitlines()[3:8]]
    assert keys == ["openai/gpt-", "4o-mini-", "2024-07-18-", "with-a-long-", "name"]


def test_the_in_process_runner_is_piped_too(cli: Cli, ledger: Path) -> None:
    run = cli("usage", "top", "--since", "2026-11-01")
    assert run.stdout.splitlines()[3].startswith(LONG_USER + "   ")
