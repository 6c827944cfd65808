from __future__ import annotations

from daemon.counters.redis_store import Replay, _checked
from waystone_cli.core.counters import Subject
from waystone_cli.core.decision import Decision, Limit

ALICE, ACME = Subject("user", "alice"), Subject("group", "acme")


def _decision(limits: tuple[Limit, ...], rates: tuple[Limit, ...] = ()) -> Decision:
    return Decision(
        allowed=True, status=200, code=None, message=None, retry_after=None, headers={},
        model="up/m", max_tokens=None, fallbacks=(), output_checks=(), datasets=(),
        capture=False, retain_days=None, rulesets=(), rules=(), subjects=(ALICE, ACME),
        reasons=(), limits=limits, rate_limits=rates,
    )  # fmt: skip


def test_every_limit_tested_is_checked_under_its_subjects_redis_key() -> None:
    credits = Limit(None, "credits", "group:acme", "cost_usd", "month", 1.0, 5.0)
    share = Limit("rs", "share", "user:alice in group:acme", "cost_usd", "month", 0.5, 2.5)
    rpm = Limit("rs", "rpm", "user:alice", "rpm", "60s", 1, 3)
    checked = _checked(_decision((credits, share), (rpm,)), None)
    assert [(lim.rule, key) for lim, key in checked] == [
        ("credits", "g:acme"),
        ("share", "m:acme\x1falice"),
        ("rpm", "u:alice"),
    ]


def test_replay_keeps_only_the_settles_after_the_ledger_read() -> None:
    replay = Replay()
    for seq in (1, 2, 3):
        replay.add(seq, ("id", seq))
    assert replay.take(after=2) == [("id", 3)]
    assert replay.take() == []
