"""``/healthz`` (the process answers), ``/metrics`` (the counters, for Prometheus) and
``/readyz`` (config loaded, ledger writable, queue below its high-water mark, each
provider's last error, and the config's run-time warnings, such as a provider key
variable that is not set).

A provider's last error is reported but does not make the gateway unready: other
providers, fallbacks and the ledger still work, and a load balancer pulling every
replica because one provider failed once would turn a partial outage into a full one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from daemon.alerts.delivery import DELIVERY
from daemon.counters.lifecycle import store_state
from daemon.request.proxy import admit
from daemon.state import CONFIG, LEDGER, OBSERVER, STORE
from waystone_cli.core.config.warnings import config_warnings

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
    ledger_ok = writer.healthy
    queue_ok = depth < HIGH_WATER * limit
    checks = {
        "config": {"ok": holder.last_error is None, "error": holder.last_error},
        "ledger": {
            "ok": ledger_ok,
            "queue_depth": depth,
            "queue_size": limit,
            "last_flush_ms": writer.last_flush_ms,
            # Rows the ledger cannot store are set aside there, not retried: no effect
            # on readiness, but an operator should look.
            "rows_rejected": writer.rejected,
            "rejected_path": str(writer.rejected_path),
        },
        "queue": {"ok": queue_ok},
        # Not part of ``ready``: requests no limit applies to are still served.
        "counters": store_state(request.app[STORE]),
        "providers": _provider_errors(request.app, config.providers),
        "alerts": _alerts(request.app),
    }
    # A config that failed to reload leaves the previous one in force: still ready.
    ready = ledger_ok and queue_ok
    warnings = config_warnings(config, os.environ)
    return web.json_response(
        {"ready": ready, "checks": checks, "warnings": warnings}, status=200 if ready else 503
    )


def _alerts(app: web.Application) -> dict[str, Any]:
    """Events waiting for the webhook: shown, never a reason to be unready (a receiver
    that is down must not take the gateway out of its load balancer)."""
    delivery = app.get(DELIVERY)
    return {
        "enabled": app[CONFIG].current.config.alerts.webhook is not None,
        "pending": delivery.pending if delivery is not None else 0,
        "last_error": delivery.last_error if delivery is not None else None,
    }


def _provider_errors(app: web.Application, providers: Iterable[str]) -> dict[str, Any]:
    errors = app[OBSERVER].provider_errors
    report: dict[str, Any] = {}
    for name in providers:
        error = errors.get(name)
        report[name] = {
            "last_error": error.message if error else None,
            "last_error_at": error.at.isoformat() if error else None,
        }
    return report


async def metrics_handler(request: web.Request) -> web.Response:
    if not request.app[CONFIG].current.config.server.metrics_public:
        # The counters name users, models and costs: they ask for the key the API does.
        admit(request, "metrics")
    observer = request.app[OBSERVER]
    observer.flush()
    body = observer.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
