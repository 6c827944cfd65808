"""Opening the ledger: files and folders that hold captured prompts are the owner's only."""

from __future__ import annotations

import os
from pathlib import Path

from waystone_cli.ledger.connection import open_readwrite


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_ledger_folder_file_and_wal_are_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "waystone" / "ledger.duckdb"
    con = open_readwrite(path)
    wal = path.with_name("ledger.duckdb.wal")
    assert wal.exists()  # the migrations are not checkpointed yet
    assert (mode(path.parent), mode(path), mode(wal)) == (0o700, 0o600, 0o600)
    con.close()


def test_an_existing_ledger_is_made_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.duckdb"
    open_readwrite(path).close()
    os.chmod(path, 0o644)
    con = open_readwrite(path)
    assert mode(path) == 0o600
    con.close()
