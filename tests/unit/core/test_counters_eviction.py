"""Usage counters leaving memory and coming back from the ledger: what may be evicted,
and that a restored series reads exactly what the live one read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from waystone_cli.core.counters import ANONYMOUS, Subject, UsageCounters, member_key
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.counters import counter_rows, counters_since

NOW = datetime(2026, 3, 15, 12, 0, 30, tzinfo=UTC)
MINUTE = int(NOW.timestamp() // 60)
ALICE, BOB, ACME = Subject("user", "alice"), Subject("user", "bob"), Subject("group", "acme")
WINDOWS = ("1h", "24h", "7d", "30d", "day", "week", "month")
METRICS = ("cost_usd", "tokens", "input_tokens", "output_tokens", "requests")

# A month of alice's traffic in acme, at odd minutes and seconds:
# (seconds before NOW, input tokens, output tokens, cost as the ledger stores it)
HISTORY = [
    (29 * 86_400 + 1_234, 100, 40, "0.0012345678"),
    (6 * 86_400 + 7_777, 12, 5, "0.0000210000"),
    (47 * 3_600 + 59, 300, 120, "0.0330000001"),
    (25 * 3_600 + 3_599, 7, 1, "0.0000000001"),
    (3 * 3_600 + 61, 50, 50, "0.5"),
    (119 * 60, 1, 1, "0.0000012345"),
    (61 * 60 + 29, 10, 20, "0.25"),
    (5 * 60, 2, 3, "0.0000040000"),
    (5 * 60 + 15, 2, 3, "0.0000040000"),  # the same minute as the one above
]


def charge(c: UsageCounters, when: datetime, tin: int, tout: int, cost: str) -> None:
    r = c.reserve(
        [ALICE, ACME], user_id="alice", group_id="acme", tokens=1, cost_usd=0, now=when, rate=False
    )
    c.settle(r, tokens_in=tin, tokens_out=tout, cost_usd=float(cost), now=when)


def reading(c: UsageCounters) -> list[float]:
    values = []
    for window in WINDOWS:
        for metric in METRICS:
            values.append(c.usage(ALICE, metric, window, NOW))
            values.append(c.usage(ACME, metric, window, NOW))
            values.append(c.member_usage("alice", "acme", metric, window, NOW))
    return values


def test_a_series_restored_from_the_ledger_reads_exactly_what_the_live_one_read(
    waystone_home: Path,
) -> None:
    live = UsageCounters()
    con = open_readwrite(waystone_home / "ledger.duckdb")
    for i, (ago, tin, tout, cost) in enumerate(HISTORY):
        when = NOW - timedelta(seconds=ago)
        charge(live, when, tin, tout, cost)
        con.execute(
            "INSERT INTO requests (id, ts, user_id, group_id, route, status, outcome, "
            "input_tokens, output_tokens, cost_usd) "
            "VALUES (?, ?, 'alice', 'acme', 'chat/completions', 200, 'ok', ?, ?, ?)",
            [f"r{i}", when.replace(tzinfo=None), tin, tout, cost],
        )
    expected = reading(live)
    assert live.evict(live.evictable(keep=0, idle_before=MINUTE)) == [
        ALICE,
        ACME,
        member_key("alice", "acme"),
    ]
    assert not live.has(ALICE)
    keep = live.keep
    rows = counter_rows(
        con, counters_since(NOW, keep=keep), user_id="alice", group_id="acme", now=NOW, fine=keep
    )
    con.close()
    for key in (ALICE, ACME, member_key("alice", "acme")):
        live.restore(key, rows)
    assert reading(live) == expected
    # By the minute: of the last hour's edge, 10:59:01 is out, the two of 11:55 are in.
    assert live.usage(ALICE, "cost_usd", "1h", NOW) == 8e-6


def test_a_series_with_a_reservation_in_flight_is_never_evicted() -> None:
    c = UsageCounters()
    r = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=10, cost_usd=1.0, now=NOW, rate=False
    )
    assert c.evictable(keep=0, idle_before=MINUTE + 100) == []
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0.5, now=NOW)
    assert [e.key for e in c.evictable(keep=0, idle_before=MINUTE + 100)] == [ALICE]


def test_a_series_charged_after_it_was_chosen_stays() -> None:
    c = UsageCounters()
    for subject in (ALICE, BOB):
        r = c.reserve(
            [subject], user_id=subject.id, group_id=None, tokens=1, cost_usd=0, now=NOW, rate=False
        )
        c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0.1, now=NOW)
    chosen = c.evictable(keep=0, idle_before=MINUTE + 1)
    r = c.reserve([BOB], user_id="bob", group_id=None, tokens=1, cost_usd=0, now=NOW, rate=False)
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0.1, now=NOW)  # while the ledger flushed
    assert c.evict(chosen) == [ALICE]
    assert c.usage(BOB, "cost_usd", "day", NOW) == pytest.approx(0.2)


def test_idle_series_go_and_past_the_bound_the_least_recently_charged_go_first() -> None:
    c = UsageCounters()
    for i in range(10):  # user u0 charged 10 minutes ago ... u9 one minute ago
        when = NOW - timedelta(minutes=10 - i)
        r = c.reserve(
            [Subject("user", f"u{i}")],
            user_id=f"u{i}",
            group_id=None,
            tokens=1,
            cost_usd=0,
            now=when,
            rate=False,
        )
        c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0.1, now=when)
    r = c.reserve(
        [ANONYMOUS], user_id=None, group_id=None, tokens=1, cost_usd=0, now=NOW, rate=False
    )
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0.1, now=NOW)
    idle = c.evictable(keep=100, idle_before=MINUTE - 7)  # last charged over 7 minutes ago
    assert [e.key.id for e in idle] == ["u0", "u1", "u2"]
    bounded = c.evictable(keep=5, idle_before=MINUTE - 100)  # 11 series, 5 kept
    assert sorted(e.key.id for e in bounded) == ["u0", "u1", "u2", "u3", "u4", "u5"]
    assert ANONYMOUS not in [e.key for e in c.evictable(keep=0, idle_before=MINUTE + 1)]


def test_counters_without_rate_rules_make_no_rate_window_and_drop_empty_ones() -> None:
    c = UsageCounters()
    r = c.reserve(
        [ALICE], user_id="alice", group_id=None, tokens=5, cost_usd=0, now=NOW, rate=False
    )
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0, now=NOW)
    r = c.reserve([BOB], user_id="bob", group_id=None, tokens=5, cost_usd=0, now=NOW)
    c.settle(r, tokens_in=1, tokens_out=1, cost_usd=0, now=NOW)
    assert c.rate(ALICE, NOW).requests == 0
    assert c.rate(BOB, NOW).requests == 1
    assert [c._series[s].rate is None for s in (ALICE, BOB)] == [True, False]
    c.expire(NOW + timedelta(seconds=61))
    assert c._series[BOB].rate is None  # its window emptied: dropped until used again


def test_restore_keeps_a_series_already_back_in_memory() -> None:
    c = UsageCounters()
    charge(c, NOW, 1, 2, "0.5")
    c.restore(ALICE, [["alice", None, MINUTE, 9, 9, 9, 9]])
    assert c.usage(ALICE, "requests", "day", NOW) == 1
    c.restore(BOB, [["alice", None, MINUTE, 9, 9, 9, 9]])  # rows naming someone else
    assert not c.has(BOB)
