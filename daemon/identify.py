"""``POST /api/identify``: create or update a user and/or group, and link them.

Body ``{"user": id | {id, metadata}, "group": id | {id, metadata}}`` (the same shapes as
``metadata.waystone``); answers ``{"user": id|null, "group": id|null}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from daemon.body import read_body
from daemon.call import Call
from daemon.eviction import recall
from daemon.proxy import authorize, body_limit
from daemon.state import CONFIG, ENTITIES, LEDGER
from waystone_cli.core import jsontext
from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.identity import parse_identity
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.entities import upsert_entities


async def handler(request: web.Request) -> web.Response:
    call = Call(request, "identify")
    authorize(call)
    raw = await read_body(request, body_limit(call))
    try:
        body = jsontext.loads(raw or b"{}")
    except ValueError as err:
        raise InvalidRequest(f"request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    identity = parse_identity(body)
    if identity.user is None and identity.group is None:
        raise InvalidRequest("name a user, a group or both")
    now = datetime.now(UTC)
    # Entities only, no request row (identify is not a model call): written at once
    # on the ledger's thread, so the facts are durable when we answer.
    facts = RequestRecord(
        id="identify",
        ts=now.replace(tzinfo=None),
        route="identify",
        user_id=identity.user.id if identity.user else None,
        group_id=identity.group.id if identity.group else None,
        user_metadata=dict(identity.user.metadata) if identity.user else None,
        group_metadata=dict(identity.group.metadata) if identity.group else None,
    )
    await request.app[LEDGER].run_in_db(lambda con: upsert_entities(con, [facts]))
    # After the ledger, so the store never holds facts the ledger lacks (``eviction``),
    # and no await between a recall and the store taking the facts in.
    await recall(request.app, identity)
    request.app[ENTITIES].observe(identity, request.app[CONFIG].current.config, now)
    return web.json_response(
        {
            "user": identity.user.id if identity.user else None,
            "group": identity.group.id if identity.group else None,
        }
    )
