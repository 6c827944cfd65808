"""What the policy engine takes and returns: request facts, decisions and their reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, NamedTuple

from waystone_cli.core.config import Config
from waystone_cli.core.counters import Subject
from waystone_cli.core.entities import Entity

if TYPE_CHECKING:
    from waystone_cli.core.spike import SpikeHit  # which reads this module's amount()

# RequestFacts and Decision are tuples built by keyword: one of each is made for every
# request, and a frozen dataclass would set each field through object.__setattr__.


class RequestFacts(NamedTuple):
    user: Entity | None
    group: Entity | None
    model: str  # requested, qualified "provider/model" when resolvable
    route: str
    now: datetime  # aware UTC
    estimate_tokens: int  # input estimate + token cap (or a default)
    estimate_cost_usd: float | None  # the daemon prices the estimate; None = unpriced
    stream: bool = False


@dataclass(frozen=True)
class Fallback:
    to: str
    retries: int
    ruleset: str
    rule: str


@dataclass(frozen=True)
class OutputCheck:
    ruleset: str
    rule: str
    deny_regex: str | None
    moderation: str | None
    on_fail: str


class Reason(NamedTuple):  # a tuple: several per request when rules fire
    """One plain-language line of a decision's explanation."""

    text: str
    ruleset: str | None = None
    rule: str | None = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Limit:
    """A limit and the subject's current usage against it (``rules explain``)."""

    ruleset: str | None  # None for entity credits
    rule: str  # "credits" for entity credits
    subject: str  # "user:alice", "group:acme", "user:alice in group:acme", "request"
    metric: str  # a usage metric, or "rpm", "tpm", "concurrent"
    window: str  # "month", "30d", ...; "60s" for rpm/tpm, "now" for concurrent
    used: float
    limit: float


# What a spike trigger read: (subject, metric, window, baseline window).
Watched = tuple[Subject, str, str, str]


@dataclass(frozen=True)
class Match:
    """One ruleset's verdict on the request (``why`` is filled when explaining)."""

    ruleset: str
    matched: bool
    subjects: tuple[Subject, ...]
    why: tuple[str, ...] = ()
    enabled: bool = True


class Decision(NamedTuple):
    allowed: bool
    status: int  # 200, 403 (policy block) or 429 (usage, share, credits, rate)
    code: str | None  # "blocked" | "quota_exceeded" | "rate_limited"
    message: str | None
    retry_after: float | None  # seconds
    headers: Mapping[str, str]  # x-ratelimit-* of the tightest rate rule
    model: str  # the model to use, after change_model
    max_tokens: int | None
    fallbacks: tuple[Fallback, ...]
    output_checks: tuple[OutputCheck, ...]
    datasets: tuple[str, ...]
    capture: bool
    retain_days: int | None
    rulesets: tuple[str, ...]  # applied
    rules: tuple[str, ...]  # fired, as "ruleset/rule"
    subjects: tuple[Subject, ...]  # charged: the user and/or group named, else "request"
    reasons: tuple[Reason, ...]
    # Every usage, credits and share limit tested, with the usage before this request
    # (alerts and the budget headers read them); rate limits only when explaining.
    limits: tuple[Limit, ...] = ()
    matches: tuple[Match, ...] = ()  # every ruleset (when explaining)
    # Every rate limit tested (rpm, tpm, concurrent), explaining or not: what the shared
    # counters check again when they admit the request (``daemon/counters``).
    rate_limits: tuple[Limit, ...] = ()
    # The spike triggers that held, for rules that fired (whatever their action), once
    # per subject and rule; alerts send ``spike.detected`` from them.
    spikes: tuple[SpikeHit, ...] = ()
    # The counter values a spike trigger read, which no limit enforces: shared counters
    # send their fresh values back with the admission, so that the next decision reads
    # them (``daemon/counters``).  Alerts and the budget headers do not read them.
    watched: tuple[Watched, ...] = ()
    flagged: bool = False  # a ``flag`` rule fired: the ledger row says so


def model_matches(glob: str, model: str) -> bool:
    """A ``model`` trigger: the glob against ``provider/model`` and the bare model."""
    if fnmatchcase(model, glob):
        return True
    return "/" in model and fnmatchcase(model.split("/", 1)[1], glob)


def qualify(config: Config, target: str, requested: str) -> str:
    """``provider/model`` for a bare ``to``: the requested model's provider if it serves
    it, else the one provider that does; left bare when that is ambiguous."""
    if "/" in target:
        return target
    provider = requested.split("/", 1)[0] if "/" in requested else None
    if (
        provider is not None
        and provider in config.providers
        and target in config.providers[provider].models
    ):
        return f"{provider}/{target}"
    serving = [name for name, p in config.providers.items() if target in p.models]
    if len(serving) == 1:
        return f"{serving[0]}/{target}"
    return f"{provider}/{target}" if provider and not serving else target


def number(value: float) -> str:
    """A count or amount without float noise: 3, 2.5, 0.000125."""
    if value == int(value):
        return str(int(value))
    return f"{value:.10f}".rstrip("0")


def amount(metric: str, value: float) -> str:
    return f"${number(round(value, 10))}" if metric == "cost_usd" else number(value)
