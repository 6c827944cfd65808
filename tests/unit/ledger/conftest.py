"""Fixtures for the ledger tests: a migrated DuckDB file in tmp_path and a record maker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger import writer as writer_module
from waystone_cli.ledger.connection import open_readwrite

T0 = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.duckdb"


@pytest.fixture
def con(ledger_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = open_readwrite(ledger_path)
    yield connection
    connection.close()


def record(n: int, **fields: Any) -> RequestRecord:
    """Request ``n``: one second after the previous one, with small exact usage."""
    values: dict[str, Any] = {
        "id": f"req-{n:06d}",
        "ts": T0 + timedelta(seconds=n),
        "route": "chat/completions",
        "status": 200,
        "provider": "openai",
        "requested_model": "gpt-4o",
        "model": "gpt-4o",
        "input_tokens": 10,
        "output_tokens": 2,
    }
    values.update(fields)
    return RequestRecord(**values)


def failing_inserts(
    monkeypatch: pytest.MonkeyPatch, error: Exception | None = None, times: int | None = None
) -> list[int]:
    """Make the writer's batch inserts raise ``error`` on their first ``times`` calls
    (every call when None; none without an error); returns each call's row count."""
    sizes: list[int] = []
    real = writer_module.insert_batch

    def insert(con: duckdb.DuckDBPyConnection, records: Sequence[RequestRecord], *a: Any) -> None:
        sizes.append(len(records))
        if error is not None and (times is None or len(sizes) <= times):
            raise error
        real(con, records, *a)

    monkeypatch.setattr(writer_module, "insert_batch", insert)
    return sizes
