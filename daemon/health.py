"""``/healthz`` (the process answers) and ``/readyz`` (config loaded, ledger writable,
queue below its high-water mark)."""

from __future__ import annotations

from aiohttp import web

from daemon.state import CONFIG, LEDGER

# Ready only while the ledger queue is below this share of its capacity.
HIGH_WATER = 0.8


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    holder = request.app[CONFIG]
    config = holder.current.config
    writer = request.app[LEDGER]
    depth = writer.depth
    limit = config.ledger.queue_size
    checks = {
        "config": {"ok": holder.last_error is None, "error": holder.last_error},
        "ledger": {
            "ok": writer.healthy,
            "queue_depth": depth,
            "queue_size": limit,
            "last_flush_ms": writer.last_flush_ms,
        },
        "queue": {"ok": depth < HIGH_WATER * limit},
    }
    # A config that failed to reload leaves the previous one in force: still ready.
    ready = checks["ledger"]["ok"] and checks["queue"]["ok"]
    return web.json_response({"ready": bool(ready), "checks": checks}, status=200 if ready else 503)
