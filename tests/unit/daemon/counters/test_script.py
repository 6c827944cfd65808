"""The counters' Lua script on a real redis-server, at times chosen by the test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from daemon.counters.script import SCRIPT
from tests.servers import RedisServer

KEEP = 32 * 86400
M = 29_400_000  # an epoch minute (a Wednesday of 2025)
MS = M * 60_000


@pytest.fixture
def script(redis_server: RedisServer) -> Iterator[Any]:
    client = redis.Redis(port=redis_server.port)
    sha = client.script_load(SCRIPT)
    client.sadd("ws:ledgers", "ledger")

    def run(*args: Any) -> Any:
        return client.evalsha(sha, 0, *args)

    yield run
    client.close()


def _admit(script: Any, at_ms: int, rid: str, limits: list[Any], tokens: int = 10) -> Any:
    """Reserve 1 USD and ``tokens`` for u:alice if ``limits`` stand; the reply."""
    return script(
        "admit", "ledger", at_ms, KEEP, rid, at_ms + 900_000, 10**10, tokens, 1, 1, 1, "u:alice",
        *limits,
    )  # fmt: skip


def _settle(script: Any, rid: str, minute: int, second: int, units: int, tokens: int) -> Any:
    return script("settle", "ledger", KEEP, rid, minute, second, units, tokens, 0, 1, "u:alice")


def _read(script: Any, at_ms: int, window: str, start: int) -> list[int]:
    return list(script("read", at_ms, KEEP, "u:alice", window, start))


def test_a_rolling_windows_totals_follow_the_clock_minute_by_minute(script: Any) -> None:
    assert _admit(script, MS + 5_000, "a", [])[0] == 1
    # Reserved: 1 USD pending, nothing settled.
    assert _read(script, MS + 6_000, "1h", M - 60) == [0, 0, 0, 0, 10**10, 10, 1]
    _settle(script, "a", M, M * 60 + 5, 2 * 10**10, 7)
    assert _read(script, MS + 7_000, "1h", M - 60) == [2 * 10**10, 7, 0, 1, 0, 0, 0]
    # The next minute walks the stored totals forward over minute M: counted once.
    assert _read(script, MS + 60_000, "1h", M - 59)[:4] == [2 * 10**10, 7, 0, 1]
    # An hour later minute M has left the window.
    assert _read(script, MS + 3_660_000, "1h", M + 1)[:4] == [0, 0, 0, 0]


def test_a_late_settle_adds_to_totals_that_already_hold_its_minute(script: Any) -> None:
    _admit(script, MS, "a", [])
    assert _read(script, MS + 120_000, "month", M - 100)[:4] == [0, 0, 0, 0]  # stored to M+1
    _settle(script, "a", M, M * 60, 3, 5)
    assert _read(script, MS + 125_000, "month", M - 100)[:4] == [3, 5, 0, 1]


def test_admit_refuses_to_reserve_when_a_limit_is_on_the_other_side(script: Any) -> None:
    cap = ["u:alice", "month", M - 100, "cost_usd", 1.5, 0]  # seen below 1.5 USD
    assert _admit(script, MS, "a", cap) == [1, 0, 0]
    assert _admit(script, MS, "b", cap) == [1, 10**10, 0]  # 1 USD pending: still below
    assert _admit(script, MS, "c", cap) == [0, 2 * 10**10, 0]  # 2 USD: stale, not reserved
    seen_reached = ["u:alice", "month", M - 100, "cost_usd", 1.5, 1]
    assert _admit(script, MS, "c", seen_reached) == [1, 2 * 10**10, 0]


def test_rpm_counts_requests_started_in_the_last_60_seconds(script: Any) -> None:
    rpm = ["u:alice", "60s", 0, "rpm", 5, 0]
    assert _admit(script, MS, "a", rpm) == [1, 0, 0]
    # One request, of second M*60: it has left once that second is 61 seconds old.
    assert _admit(script, MS + 30_000, "b", rpm) == [1, 1, MS + 61_000]
    assert _admit(script, MS + 60_000, "c", rpm) == [1, 2, MS + 61_000]
    assert _admit(script, MS + 61_000, "d", rpm) == [1, 2, MS + 91_000]


def test_tpm_reads_the_actual_tokens_once_settled(script: Any) -> None:
    tpm = ["u:alice", "60s", 0, "tpm", 1000, 0]
    _admit(script, MS, "a", tpm, tokens=100)
    _settle(script, "a", M, M * 60, 0, 7)  # 7 tokens used of the 100 reserved
    assert _admit(script, MS + 1_000, "b", tpm)[1] == 7
