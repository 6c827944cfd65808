"""``POST /api/identify``: create or update a user and/or group, and link them.

Body ``{"user": id | {id, metadata}, "group": id | {id, metadata}}`` (the same shapes as
``metadata.waystone``); answers ``{"user": id|null, "group": id|null}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from daemon.request.body import decode_json, read_body
from daemon.request.call import Call
from daemon.request.eviction import recall
from daemon.request.proxy import authorize, body_limit
from daemon.state import CONFIG, ENTITIES, LEDGER
from waystone_cli.core.errors import InvalidRequest
from waystone_cli.core.identity import parse_identity, without_metadata
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.entities import upsert_entities


async def handler(request: web.Request) -> web.Response:
    call = Call(request, "identify")
    authorize(call)
    body = decode_json(await read_body(request, body_limit(call)) or b"{}")
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    identity = parse_identity(body)
    if identity.user is None and identity.group is None:
        raise InvalidRequest("name a user, a group or both")
    config = request.app[CONFIG].current.config
    if not config.server.merges_request_metadata:
        identity = without_metadata(identity)
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
    request.app[ENTITIES].observe(identity, config, now)
    return web.json_response(
        {
            "user": identity.user.id if identity.user else None,
            "group": identity.group.id if identity.group else None,
        }
    )
