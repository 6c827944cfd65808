"""Rows of refused unauthenticated requests: a few per address and cause each minute,
the rest counted and summed up in one warning."""

from __future__ import annotations

import asyncio
import logging

import pytest

from daemon.request.refusals import RefusedRows

MINUTE = 1_800_000_000 // 60 * 60  # the start of a clock minute, in epoch seconds


def _rows(dropped: list[str], **kwargs: float) -> RefusedRows:
    return RefusedRows(dropped.append, per_minute=3, summary_s=3600, **kwargs)  # type: ignore[arg-type]


async def test_each_address_and_cause_keeps_its_rows_up_to_the_limit_each_minute() -> None:
    dropped: list[str] = []
    rows = _rows(dropped)
    first = [rows.admit("10.0.0.1", "unauthorized", MINUTE + i) for i in range(5)]
    assert first == [True, True, True, False, False]
    assert rows.admit("10.0.0.1", "invalid_request", MINUTE + 6)  # another cause
    assert rows.admit("10.0.0.2", "unauthorized", MINUTE + 7)  # another address
    assert rows.admit("10.0.0.1", "unauthorized", MINUTE + 60)  # the next minute
    assert dropped == ["unauthorized", "unauthorized"]
    rows.summarize()


async def test_addresses_beyond_the_bound_share_one_allowance() -> None:
    dropped: list[str] = []
    rows = _rows(dropped, max_sources=2)
    assert rows.admit("a", "unauthorized", MINUTE) and rows.admit("b", "unauthorized", MINUTE)
    others = [rows.admit(f"c{i}", "unauthorized", MINUTE) for i in range(5)]
    assert others == [True, True, True, False, False]
    assert len(rows._admitted) == 3  # a, b and the shared allowance
    rows.summarize()


async def test_one_summary_warning_follows_the_first_drop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "waystone.daemon")
    rows = RefusedRows(lambda cause: None, per_minute=1, summary_s=0.05)
    for address in ("a", "a", "a", "b", "b"):
        rows.admit(address, "unauthorized", MINUTE)
    await asyncio.sleep(0.3)
    assert [r.getMessage() for r in caplog.records] == [
        "dropped the ledger rows of 3 refused unauthenticated requests (unauthorized=3) "
        "from 2 addresses (kept: 1 a minute per address and cause)"
    ]
    rows.summarize()  # nothing dropped since: nothing logged
    assert len(caplog.records) == 1
