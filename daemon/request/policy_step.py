"""Where the policy decision slots into the request path.

The engine (``core.policy.decide``) is pure; this step gathers its facts, enforces the
decision (refuse, change the model) and reserves the request's estimated usage in the
counter store as one step with the decision (the same event-loop step in memory, one
atomic script on the Redis server), so concurrent requests cannot all pass a check
that only one of them should. It returns the token
cap the decision sets; ``upstream_body`` makes the edit when the body is forwarded.
"""

from __future__ import annotations

from typing import Any

from daemon.counters.store import STALE, Hold
from daemon.request.call import Call
from daemon.request.upstream_body import cap_edits
from daemon.state import STORE
from waystone_cli.core.decision import Decision
from waystone_cli.core.errors import ClusterUnavailable, PolicyBlocked
from waystone_cli.core.models import route_api, speaks
from waystone_cli.core.policy import RequestFacts, decide
from waystone_cli.core.request_fields import CAP_KEYS, check_estimate_fields, choices
from waystone_cli.core.usage import estimate_input_tokens

# Decisions made before the shared counters' answer is taken as final (each retry
# decides from fresher values; only a subject charged on every try exhausts them).
ATTEMPTS = 5
# Output budget assumed for a request that sets no cap, when reserving its estimate.
DEFAULT_OUTPUT_ESTIMATE = 1024


async def apply_policy(call: Call, body: dict[str, Any]) -> int | None:
    """Decide, enforce and reserve; the token cap to put on the body (``None``: no cap).

    The store (``daemon/counters``) reserves only if the decision still stands on the
    shared counters; when they moved on (another instance charged meanwhile) it answers
    ``STALE`` and the decision is made again from the counters' fresh values.  The
    in-memory store always accepts, in the same event-loop step as the decision.
    """
    rec = call.record
    check_estimate_fields(rec.route, body)  # before anything is estimated or reserved
    input_tokens = estimate_input_tokens(rec.route, body)
    n = choices(rec.route, body)
    output_tokens = _output_estimate(_body_cap(body), n)
    cost = _estimate_cost(call, rec.provider, rec.model, input_tokens, output_tokens)
    store = call.app[STORE]
    facts = _facts(call, input_tokens + output_tokens, cost)
    requested = (rec.provider, rec.model)
    for _ in range(ATTEMPTS):
        rec.provider, rec.model = requested
        decision = decide(call.snapshot.config, facts, store.view, plan=call.snapshot.policy)
        call.decision = decision
        rec.rulesets = list(decision.rulesets)
        rec.rules = list(decision.rules)
        rec.flagged = decision.flagged  # a refused request that a flag rule marked says so too
        if not decision.allowed:
            if await store.confirm(decision) is STALE:
                continue
            raise _refusal(decision, call.budget_headers() if decision.limits else {})
        cap, hold = _enforce(call, decision, body, input_tokens, n, cost, output_tokens)
        reservation = await store.admit(decision, hold)
        if reservation is STALE:
            continue
        call.reservation = reservation
        call.rate_headers = decision.headers  # each Decision has a dict of its own
        return cap
    raise ClusterUnavailable("the shared usage counters changed on every try; retry")


def _enforce(
    call: Call,
    decision: Decision,
    body: dict[str, Any],
    input_tokens: int,
    n: int,
    cost: float | None,
    output_tokens: int,
) -> tuple[int | None, Hold]:
    """Apply an allowing decision to the record; the cap and what to reserve."""
    rec = call.record
    priced_as = (rec.provider, rec.model, output_tokens)
    if decision.model != rec.requested_model and rec.model is not None:
        provider, model = call.snapshot.models.resolve(decision.model)
        # A rule never moves a request to a provider that does not speak its API.
        if speaks(provider, route_api(rec.route)):
            rec.provider, rec.model = provider.name, model
    cap = decision.max_tokens
    rec.datasets = list(decision.datasets)
    rec.retain_days = decision.retain_days
    rec.capture = decision.capture or bool(decision.datasets)
    capped = body if cap is None else cap_edits(body, rec.route, cap)
    output_tokens = _output_estimate(_body_cap(capped), n)
    if (rec.provider, rec.model, output_tokens) != priced_as:  # a rule changed the model or cap
        cost = _estimate_cost(call, rec.provider, rec.model, input_tokens, output_tokens)
    config = call.snapshot.config
    hold = Hold(
        subjects=decision.subjects,
        user_id=rec.user_id,
        group_id=rec.group_id,
        tokens=input_tokens + output_tokens,
        cost_usd=cost or 0.0,
        now=call.now,
        rate=call.snapshot.rates,
        unpriced=cost is None and config.server.unpriced_blocks,
    )
    return cap, hold


def _refusal(decision: Decision, budget: dict[str, str]) -> PolicyBlocked:
    return PolicyBlocked(
        decision.message or "blocked by policy",
        status=decision.status,
        code=decision.code or "blocked",
        retry_after=decision.retry_after,
        headers={**decision.headers, **budget},
    )


def _facts(call: Call, tokens: int, cost: float | None) -> RequestFacts:
    rec = call.record
    user, group = call.entities
    return RequestFacts(
        user=user,
        group=group,
        model=rec.requested_model or f"{rec.provider}/",
        route=rec.route,
        now=call.now,
        estimate_tokens=tokens,
        estimate_cost_usd=cost,
        stream=rec.stream,
    )


def _body_cap(body: dict[str, Any]) -> int | None:
    cap = None
    for key in CAP_KEYS:
        value = body.get(key)
        if type(value) is int and (cap is None or value < cap):  # a bool is no cap
            cap = value
    return cap


def _output_estimate(cap: int | None, choices: int) -> int:
    """The output tokens reserved: the cap (checked positive) or a default, per choice."""
    return (cap or DEFAULT_OUTPUT_ESTIMATE) * choices


def _estimate_cost(
    call: Call, provider: str | None, model: str | None, input_tokens: int, output_tokens: int
) -> float | None:
    if not provider or not model:
        return None
    return call.snapshot.pricer.estimate(provider, model, input_tokens, output_tokens)
