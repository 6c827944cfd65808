"""Where the policy decision slots into the request path.

The engine (``core.policy.decide``) is pure; this step gathers its facts, enforces the
decision (refuse, change the model, cap tokens) and reserves the request's estimated
usage in the counters in the same event-loop step as the decision, so concurrent
requests cannot all pass a check that only one of them should.
"""

from __future__ import annotations

from typing import Any

from daemon.call import Call
from daemon.state import COUNTERS
from waystone_cli.core.errors import PolicyBlocked
from waystone_cli.core.policy import RequestFacts, decide
from waystone_cli.core.usage import estimate_input_tokens

# Output budget assumed for a request that sets no cap, when reserving its estimate.
DEFAULT_OUTPUT_ESTIMATE = 1024
_CAP_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_STREAM_USAGE_ROUTES = ("chat/completions", "completions")


def apply_policy(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    rec = call.record
    call.input_body = body
    input_tokens = estimate_input_tokens(rec.route, body)
    cap = _body_cap(body)
    priced_as = (rec.provider, rec.model, cap)
    cost = _estimate_cost(call, rec.provider, rec.model, input_tokens, cap)
    counters = call.app[COUNTERS]
    decision = decide(call.snapshot.config, _facts(call, input_tokens, cap, cost), counters)
    call.decision = decision
    rec.rulesets = list(decision.rulesets)
    rec.rules = list(decision.rules)
    if not decision.allowed:
        raise PolicyBlocked(
            decision.message or "blocked by policy",
            status=decision.status,
            code=decision.code or "blocked",
            retry_after=decision.retry_after,
            headers=dict(decision.headers),
        )
    if decision.model != rec.requested_model and rec.model is not None:
        provider, model = call.snapshot.models.resolve(decision.model)
        rec.provider, rec.model = provider.name, model
    body = _edit_body(call, body, decision.max_tokens)
    rec.datasets = list(decision.datasets)
    rec.retain_days = decision.retain_days
    rec.capture = decision.capture or bool(decision.datasets)
    cap = _body_cap(body)
    if (rec.provider, rec.model, cap) != priced_as:  # a rule changed the model or the cap
        cost = _estimate_cost(call, rec.provider, rec.model, input_tokens, cap)
    # Reserved in the same event-loop step as the decision: the overshoot bound needs it.
    call.reservation = counters.reserve(
        decision.subjects,
        user_id=rec.user_id,
        group_id=rec.group_id,
        tokens=input_tokens + (cap or DEFAULT_OUTPUT_ESTIMATE),
        cost_usd=cost or 0.0,
        now=call.now,
        rate=call.snapshot.rates,
    )
    call.rate_headers = decision.headers  # each Decision has a dict of its own
    return body


def _facts(call: Call, input_tokens: int, cap: int | None, cost: float | None) -> RequestFacts:
    rec = call.record
    user, group = call.entities
    return RequestFacts(  # positionally: by keyword a NamedTuple costs a microsecond more
        user,
        group,
        rec.requested_model or f"{rec.provider}/",
        rec.route,
        call.now,
        input_tokens + (cap or DEFAULT_OUTPUT_ESTIMATE),
        cost,
        rec.stream,
    )


def _edit_body(call: Call, body: dict[str, Any], cap: int | None) -> dict[str, Any]:
    streams_usage = call.record.stream and call.record.route in _STREAM_USAGE_ROUTES
    if cap is None and not streams_usage:
        return body  # nothing to edit: no copy
    body = dict(body)
    if cap is not None:
        keys = [k for k in _CAP_KEYS if k in body] or [_default_cap_key(call.record.route)]
        for key in keys:
            current = body.get(key)
            body[key] = cap if not isinstance(current, int) or current > cap else current
    if streams_usage:
        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        call.drop_usage_chunk = not asked
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return body


def _default_cap_key(route: str) -> str:
    return "max_output_tokens" if route == "responses" else "max_tokens"


def _body_cap(body: dict[str, Any]) -> int | None:
    cap = None
    for key in _CAP_KEYS:
        value = body.get(key)
        if type(value) is int and (cap is None or value < cap):  # a bool is no cap
            cap = value
    return cap


def _estimate_cost(
    call: Call, provider: str | None, model: str | None, input_tokens: int, cap: int | None
) -> float | None:
    if not provider or not model:
        return None
    return call.snapshot.pricer.estimate(
        provider, model, input_tokens, cap or DEFAULT_OUTPUT_ESTIMATE
    )
