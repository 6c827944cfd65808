"""Finished requests are counted and logged in batches (``Observer.request_done``): a
request waits at most ``BATCH_S``, or until ``BATCH_SIZE`` are waiting, or until a
flush (a scrape, the daemon stopping); under any other logging, each is done at once."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import datetime
from typing import Any

import pytest

from daemon.telemetry import observe
from daemon.telemetry.observe import BATCH_S, BATCH_SIZE, Observer
from waystone_cli.core.config import Config
from waystone_cli.core.records import RequestRecord


@pytest.fixture
def daemon_log(daemon_logger: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The observer's request logger, with only the daemon's handler (``daemon_logger``)."""
    logger, _, out = daemon_logger
    monkeypatch.setattr(observe, "log", logger)
    return logger, out


def finished(i: int) -> Any:
    rec = RequestRecord(id=f"req_{i}", ts=datetime(2026, 3, 15, 12), route="chat/completions")
    rec.status, rec.provider, rec.model = 200, "mock", "m"
    rec.input_tokens, rec.output_tokens, rec.latency_ms = 3, 4, 1.0
    return rec, Config(), None, False  # record, config, trace, has_usage


def counted(observer: Observer) -> float:
    return sum(observer.metrics.requests.values.values())


def logged_ids(out: io.StringIO) -> list[str]:
    return [line.split()[4] for line in out.getvalue().splitlines()]


async def test_a_request_waits_at_most_batch_s(daemon_log: Any) -> None:
    _, out = daemon_log
    observer = Observer()
    observer.request_done(*finished(1))
    observer.request_done(*finished(2))
    assert (counted(observer), out.getvalue()) == (0, "")
    await asyncio.sleep(BATCH_S * 3)
    assert counted(observer) == 2
    assert logged_ids(out) == ["request_id=req_1", "request_id=req_2"]


async def test_a_full_batch_is_done_at_once(daemon_log: Any) -> None:
    _, out = daemon_log
    observer = Observer()
    for i in range(BATCH_SIZE - 1):
        observer.request_done(*finished(i))
    assert counted(observer) == 0
    observer.request_done(*finished(BATCH_SIZE))
    assert counted(observer) == BATCH_SIZE
    assert len(logged_ids(out)) == BATCH_SIZE


async def test_a_flush_leaves_nothing_waiting_and_counts_once(daemon_log: Any) -> None:
    _, out = daemon_log
    observer = Observer()
    observer.request_done(*finished(1))
    observer.flush()
    assert (counted(observer), logged_ids(out)) == (1, ["request_id=req_1"])
    await asyncio.sleep(BATCH_S * 3)  # the timer was cancelled: nothing is done twice
    assert (counted(observer), logged_ids(out)) == (1, ["request_id=req_1"])


async def test_under_other_logging_each_request_is_done_at_once(daemon_log: Any) -> None:
    logger, out = daemon_log
    seen: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(other)  # e.g. pytest's caplog
    observer = Observer()
    observer.request_done(*finished(1))
    assert counted(observer) == 1
    assert [r.getMessage().split()[0] for r in seen] == ["request_id=req_1"]
    assert logged_ids(out) == ["request_id=req_1"]  # the daemon's handler got it too


async def test_with_request_lines_off_metrics_still_batch(daemon_log: Any) -> None:
    logger, out = daemon_log
    logger.setLevel(logging.WARNING)
    observer = Observer()
    observer.request_done(*finished(1))
    assert counted(observer) == 0
    observer.flush()
    assert (counted(observer), out.getvalue()) == (1, "")
