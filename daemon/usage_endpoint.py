"""``GET /v1/waystone/usage?user=ID[&group=G]``: what an application shows its end user.

The answer is laid out by ``core.budget.usage_report`` from the same explained decision
as ``waystone rules explain`` (``explain.explained``), read from the daemon's live
counters, so a request in flight counts at its reservation, as it does when the policy
decides.  The gateway key is required when keys are configured, as on the API routes.
A user or group the gateway never saw is answered as new (no usage, the limits that
would apply), as ``rules explain`` does: nothing is created by asking.
"""

from __future__ import annotations

from aiohttp import web

from daemon.request.call import Call
from daemon.request.eviction import recall
from daemon.request.proxy import authorize
from daemon.state import ENTITIES, STORE
from waystone_cli.core.budget import usage_report
from waystone_cli.core.config import Config
from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.identity import parse_identity
from waystone_cli.core.policy import counted_windows
from waystone_cli.explain import explained

ROUTE = "waystone/usage"


async def handler(request: web.Request) -> web.Response:
    call = Call(request, ROUTE)
    authorize(call)
    query = request.query
    unknown = sorted(set(query) - {"user", "group"})
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r} (user and group)", param=unknown[0])
    if "user" not in query:
        raise InvalidRequest("name the user: ?user=ID[&group=ID]", param="user")
    asked = {k: query[k] for k in ("user", "group") if k in query}
    identity = parse_identity(asked, where="query")
    assert identity.user is not None
    await recall(request.app, identity)  # an evicted user's counters come back first
    config = call.snapshot.config
    entities = request.app[ENTITIES]
    user = entities.entity("user", identity.user.id, config)
    group = entities.entity("group", identity.group.id, config) if identity.group else None
    store = request.app[STORE]
    await store.refresh(user.id, group.id if group else None, _windows(config), call.now)
    counters = store.view
    decision = explained(
        config, counters, user=user, group=group, model="", at=call.now, plan=call.snapshot.policy
    )
    return web.json_response(
        usage_report(
            decision,
            counters,
            config,
            user=user.id,
            group=group.id if group else None,
            now=call.now,
        )
    )


def _windows(config: Config) -> set[str]:
    """Every window a limit, credits or a spike trigger of ``config`` counts in, and this
    month (a spike's reasons are part of the explained decision)."""
    return {"month", *counted_windows(config)}
