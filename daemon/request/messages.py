"""The routes of Anthropic's Messages API: ``messages`` and ``messages/count_tokens``.

They run the request path of every proxied route (``proxy.run_call``) with a body read
the Anthropic way and errors answered in Anthropic's envelope:

- the identity is ``metadata.waystone`` and the ``X-Waystone-*`` headers, as on every
  route, then ``metadata.user_id`` as the user when neither names one; ``waystone`` is
  removed from ``metadata`` (Anthropic refuses keys it does not know), ``user_id`` stays;
- the model must be served by a provider that speaks this API (kind ``anthropic``, or
  the mock): any other is a 400 that says so;
- ``count_tokens`` goes through the policy as a call does (a refused caller is refused
  here too) and gets its ledger row, with no tokens: it uses none.  Its body takes no
  token cap, so ``limit_tokens`` leaves it alone.
"""

from __future__ import annotations

from typing import Any

from daemon.errors import Handler, anthropic_error_as_response
from daemon.request.body import decode_json, read_body
from daemon.request.call import Call
from daemon.request.forward import Prepared
from daemon.request.policy_step import apply_policy
from daemon.request.proxy import attach_identity, body_limit, proxied_route, resolve
from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.identity import Identity, pop_identity, with_fallback_user
from waystone_cli.core.usage import MESSAGES_ROUTES

__all__ = ["MESSAGES_ROUTES", "messages_route"]


def messages_route(route: str) -> Handler:
    return proxied_route(route, _prepare, anthropic_error_as_response)


async def _prepare(call: Call) -> Prepared:
    body = decode_json(await read_body(call.request, body_limit(call)))
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    identity, body = pop_identity(body)

    def fallback(named: Identity) -> Identity:
        return with_fallback_user(named, user_id, "metadata.user_id")

    await attach_identity(call, identity, fallback)
    resolve(call, body.get("model"), required=True)
    rec = call.record
    rec.stream = bool(body.get("stream")) and rec.route == "messages"
    call.input_content = _input_of(body)
    cap = await apply_policy(call, body)
    return Prepared(payload=body, body=body, cap=cap if rec.route == "messages" else None)


def _input_of(body: dict[str, Any]) -> Any:
    """What a dataset or capture stores of the request: the messages, and the system
    prompt when there is one."""
    system = body.get("system")
    messages = body.get("messages")
    return {"system": system, "messages": messages} if system else messages
