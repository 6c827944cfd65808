"""What the policy engine would do with a request right now (``waystone rules explain``).

The entities are built as the daemon builds them (declared metadata over what traffic
sent; first seen = the earlier of traffic and ``added``), the usage counters are rebuilt
from the ledger for just these entities, and ``decide()`` runs with ``explain=True``.
Both ledger queries go through the daemon when it runs, so the answer is the same with
the daemon up or down (up to the writer's last second; live reservations of requests in
flight are not visible from outside the daemon).  Rate windows (rpm, tpm, concurrency)
live only in the running daemon, so they are read from it (``LiveRates``); with the
daemon down they are empty, as they are for a daemon that just started.

The request is taken as priced and with no token estimate: usage triggers compare what
was already used ("reached" does not depend on the next request's size); only with
``[server] unpriced_blocks`` is the model's price looked up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from waystone_cli.context import AppContext
from waystone_cli.core.config import Config
from waystone_cli.core.counters import ANONYMOUS, Subject, UsageCounters, UsageView
from waystone_cli.core.entities import Entity, Kind, as_utc, build_entity
from waystone_cli.core.ratelimit import RateState
from waystone_cli.core.spike import hit_json

if TYPE_CHECKING:
    from waystone_cli.core.policy import Decision, PolicyPlan


def explain_request(
    app: AppContext, *, user: str | None, group: str | None, model: str, at: datetime
) -> dict[str, Any]:
    """The decision for a request naming ``user``/``group`` and ``model`` at ``at``, as
    ``report`` lays it out."""
    from waystone_cli.core.models import resolve_model
    from waystone_cli.core.policy import longest_window
    from waystone_cli.ledger.counters import counters_since

    config = app.load()
    provider, bare = resolve_model(config, model)
    qualified = f"{provider.name}/{bare}"
    keep = longest_window(config)
    counters = LiveRates(tz=config.server.timezone, keep=keep)
    since = counters_since(at, keep).isoformat()
    counters.load(app.query("counter_rows", since=since, user_id=user, group_id=group))
    counters.read_live(app, user, group)
    decision = explained(
        config,
        counters,
        user=_entity(app, config, "user", user),
        group=_entity(app, config, "group", group),
        model=qualified,
        at=at,
        estimate_cost_usd=_nominal_cost(config, provider.name, bare),
    )
    return report(decision, user=user, group=group, model=qualified)


def explained(
    config: Config,
    counters: UsageView,
    *,
    user: Entity | None,
    group: Entity | None,
    model: str,
    at: datetime,
    estimate_cost_usd: float | None = 0.0,
    plan: PolicyPlan | None = None,
) -> Decision:
    """``decide(explain=True)`` for a request of ``user``/``group`` on ``model`` at ``at``:
    what ``rules explain`` prints, and what the daemon's ``GET /v1/waystone/usage``
    answers from its live counters (with its snapshot's compiled ``plan``)."""
    from waystone_cli.core.policy import RequestFacts, decide

    facts = RequestFacts(
        user=user,
        group=group,
        model=model,
        route="chat/completions",
        now=at,
        estimate_tokens=0,
        estimate_cost_usd=estimate_cost_usd,
    )
    return decide(config, facts, counters, explain=True, plan=plan)


def report(
    decision: Decision, *, user: str | None, group: str | None, model: str
) -> dict[str, Any]:
    """The explained ``decision`` as the JSON-able report ``--json`` prints."""
    return {
        "user": user,
        "group": group,
        "model": model,
        "allowed": decision.allowed,
        "status": decision.status,
        "message": decision.message,
        "model_used": decision.model,
        "max_tokens": decision.max_tokens,
        "rulesets": [
            {
                "name": m.ruleset,
                "matched": m.matched,
                "subjects": [str(s) for s in m.subjects],
                "why": list(m.why),
            }
            for m in decision.matches
        ],
        "limits": [
            {
                "ruleset": lim.ruleset,
                "rule": lim.rule,
                "subject": lim.subject,
                "metric": lim.metric,
                "window": lim.window,
                "used": lim.used,
                "limit": lim.limit,
            }
            for lim in decision.limits
        ],
        "flagged": decision.flagged,
        "spikes": [hit_json(hit) for hit in decision.spikes],
        "reasons": [str(r) for r in decision.reasons],
    }


class LiveRates(UsageCounters):
    """Counters rebuilt from the ledger, with the running daemon's rate windows for the
    subjects explained (``decide`` reads rates through ``rate`` alone)."""

    def __init__(self, tz: str, keep: timedelta) -> None:
        super().__init__(tz=tz, keep=keep)
        self.live_rates: dict[Subject, RateState] = {}

    def read_live(self, app: AppContext, user: str | None, group: str | None) -> None:
        from waystone_cli.ledger.access import ask_live

        subjects = [Subject(k, i) for k, i in (("user", user), ("group", group)) if i]
        subjects = subjects or [ANONYMOUS]
        states = ask_live(app.socket_path(), "rates", subjects=[list(s) for s in subjects])
        self.live_rates = {
            s: RateState(*state) for s, state in zip(subjects, states or [], strict=False)
        }

    def rate(self, subject: Subject, now: datetime) -> RateState:
        return self.live_rates.get(subject) or super().rate(subject, now)


def _entity(app: AppContext, config: Config, kind: Kind, ident: str | None) -> Entity | None:
    """The entity as the daemon would see it (one it never saw is explained as new)."""
    if ident is None:
        return None
    declared = config.users.get(ident) if kind == "user" else config.groups.get(ident)
    seen = app.query("seen_entity", kind=kind, id=ident)
    first = as_utc(datetime.fromisoformat(seen["first_seen"])) if seen else None
    return build_entity(
        kind,
        ident,
        declared,
        seen["metadata"] if seen else {},
        first,
        merge_seen=config.server.merges_request_metadata,
    )


def _nominal_cost(config: Config, provider: str, model: str) -> float | None:
    """0 for a priced model, None for an unpriced one (looked up only when that matters)."""
    if not config.server.unpriced_blocks:
        return 0.0
    from waystone_cli.core.pricing import Pricer

    base_urls = {name: p.base_url for name, p in config.providers.items()}
    return (
        None if Pricer(config.prices, base_urls=base_urls).price(provider, model) is None else 0.0
    )
