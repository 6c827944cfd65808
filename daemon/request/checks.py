"""Output checks (``check_output`` rules): a regex deny-list and/or a moderation call.

A failed check with ``on_fail = "block"`` refuses the answer (403 naming the ruleset and
rule); with ``on_fail = "flag"`` the answer goes through and the row is marked
``flagged``.  While a blocking check is in force a stream is held back whole, so nothing
unchecked reaches the client.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from daemon.request.call import Call
from daemon.state import HTTP
from waystone_cli.core.errors import PolicyBlocked, UpstreamError


def held_back(call: Call) -> bool:
    decision = call.decision
    return decision is not None and any(c.on_fail == "block" for c in decision.output_checks)


async def check_output(call: Call, text: str) -> None:
    decision = call.decision
    if decision is None or not decision.output_checks:
        return
    for check in decision.output_checks:
        reason = await _failure(call, check.deny_regex, check.moderation, text)
        if reason is None:
            continue
        where = f'ruleset "{check.ruleset}", rule "{check.rule}"'
        if check.on_fail == "block":
            raise PolicyBlocked(f"output blocked by {where}: {reason}", status=403, code="blocked")
        call.record.outcome = "flagged"
        call.record.error = f"output flagged by {where}: {reason}"


async def _failure(
    call: Call, deny_regex: str | None, moderation: str | None, text: str
) -> str | None:
    if deny_regex and _compiled(deny_regex).search(text):
        return "the output matches a denied pattern"
    if moderation and await _flagged(call, moderation, text):
        return f"the output was flagged by {moderation}"
    return None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


async def _flagged(call: Call, target: str, text: str) -> bool:
    provider, model = call.snapshot.models.resolve(target)
    body = {"model": model, "input": text}
    send = call.snapshot.providers[provider.name].send
    reply = await send(call.app[HTTP], "moderations", body, model, False, {}, None)
    try:
        data = await reply.read()
    finally:
        reply.release()
    if reply.status != 200:
        raise UpstreamError(f"moderation by {target} failed with status {reply.status}")
    results = json.loads(data).get("results") or []
    return any(isinstance(r, dict) and r.get("flagged") for r in results)
