"""``POST /api/identify``: create or update a user and/or group, and link them.

Body ``{"user": id | {id, metadata}, "group": id | {id, metadata}}`` (the same shapes as
``metadata.waystone``); answers ``{"user": id|null, "group": id|null}``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web

from daemon.body import read_body
from daemon.call import Call
from daemon.proxy import authorize, body_limit
from daemon.state import CONFIG, ENTITIES, LEDGER
from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.identity import parse_identity


async def handler(request: web.Request) -> web.Response:
    call = Call(request, "identify")
    authorize(call)
    raw = await read_body(request, body_limit(call))
    try:
        body = json.loads(raw or b"{}")
    except ValueError as err:
        raise InvalidRequest(f"request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    identity = parse_identity(body)
    if identity.user is None and identity.group is None:
        raise InvalidRequest("name a user, a group or both")
    now = datetime.now(UTC)
    request.app[ENTITIES].observe(identity, request.app[CONFIG].current.config, now)
    request.app[LEDGER].submit_entities(identity, now.replace(tzinfo=None))
    return web.json_response(
        {
            "user": identity.user.id if identity.user else None,
            "group": identity.group.id if identity.group else None,
        }
    )
