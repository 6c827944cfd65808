"""The local admin endpoint: the CLI's ledger queries, run by the daemon that holds the file.

HTTP over a Unix socket created with mode 0600 (readable only by its owner).
``POST /query`` with ``{"name", "params"}`` runs a ledger query; the query functions are
the same ones the CLI runs on a read-only file when no daemon is up, so answers are
identical.  ``POST /live`` with the same shape reads what only the running daemon
knows (``LIVE``): the rate windows, which the ledger does not keep.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import duckdb
from aiohttp import web

from daemon.state import COUNTERS, LEDGER, SETTINGS
from waystone_cli.core.counters import Subject
from waystone_cli.core.errors import WaystoneError
from waystone_cli.ledger.access import registry

log = logging.getLogger("waystone.admin")
MAIN_APP = web.AppKey("main_app", web.Application)


async def query(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        name, params = body["name"], body.get("params") or {}
        fn = registry()[name]
    except (ValueError, KeyError, TypeError):
        return _error(400, 'expected {"name": <known query>, "params": {...}}')
    writer = request.app[MAIN_APP][LEDGER]
    try:
        await writer.flush()  # a query sees every request finished before it was asked
        result: Any = await writer.run_in_db(lambda con: fn(con, **params))
    except WaystoneError as err:
        return _error(400, err.message)
    except TypeError as err:
        return _error(400, f"bad parameters for {name}: {err}")
    except duckdb.Error as err:
        # E.g. a report bigger than [ledger] memory_limit_mb that DuckDB cannot spill.
        log.warning("admin: the ledger could not answer %s: %s", name, err)
        return _error(503, f"the ledger could not answer {name}: {err}")
    return web.Response(
        text=json.dumps({"result": result}, default=str), content_type="application/json"
    )


def live_rates(app: web.Application, subjects: list[list[str]]) -> list[list[Any]]:
    """Each ``[kind, id]`` subject's rate window now: ``[requests, tokens, concurrent,
    reset_at]`` (``core.ratelimit.RateState``)."""
    now = datetime.now(UTC)
    return [list(app[COUNTERS].rate(Subject(kind, ident), now)) for kind, ident in subjects]


LIVE = {"rates": live_rates}


async def live(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        name, params = body["name"], body.get("params") or {}
        fn = LIVE[name]
        result = fn(request.app[MAIN_APP], **params)
    except (ValueError, KeyError, TypeError):
        return _error(400, 'expected {"name": <known live query>, "params": {...}}')
    return web.json_response({"result": result})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status)


async def admin_socket(app: web.Application) -> AsyncIterator[None]:
    path = app[SETTINGS].socket_path
    if path is None:
        yield
        return
    admin = web.Application()
    admin[MAIN_APP] = app
    admin.router.add_post("/query", query)
    admin.router.add_post("/live", live)
    runner = web.AppRunner(admin, access_log=None)
    await runner.setup()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()  # a stale socket from a daemon that died
    old_umask = os.umask(0o177)
    try:
        await web.UnixSite(runner, str(path)).start()
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    try:
        yield
    finally:
        await runner.cleanup()
        if path.exists():
            path.unlink()
