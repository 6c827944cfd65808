"""The daemon's app factory: routes and resources by lifetime.

``create_app(settings)`` is what both production (``waystone serve``) and the tests
call.  Shared resources are opened and closed in ``cleanup_ctx`` in one place: the
ledger (file, writer task, entity store, usage counters), the upstream HTTP session,
the alerts' outbox tasks, the config watcher, the admin socket, the instance's
heartbeat, the daily pruning task and the sweep that evicts idle entities and counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from daemon import health, identify, usage_endpoint
from daemon.admin import admin_socket
from daemon.alerts.delivery import alerts_ctx
from daemon.alerts.outbox import Outbox
from daemon.counters.lifecycle import counters_ctx
from daemon.errors import UNMATCHED_PATH, openai_errors, unmatched
from daemon.maintenance import pruning
from daemon.process.heartbeat import heartbeat
from daemon.providers.http_client import HttpClient
from daemon.reload import watch_config
from daemon.request.entities import EntityStore
from daemon.request.eviction import EVICTIONS, Evictions, evicting, trim_loaded
from daemon.request.messages import MESSAGES_ROUTES, messages_route
from daemon.request.proxy import JSON_ROUTES, json_route, models_handler, multipart_route
from daemon.state import (
    ALERTS,
    CONFIG,
    COUNTERS,
    ENTITIES,
    HTTP,
    LEDGER,
    LISTEN_HOST,
    OBSERVER,
    SETTINGS,
    ConfigHolder,
    Settings,
    Snapshot,
)
from daemon.telemetry.observe import Observer
from daemon.telemetry.tracing import tracing_ctx
from waystone_cli.core.config import load_config
from waystone_cli.core.counters import UsageCounters
from waystone_cli.core.policy import longest_window

PREFIXES = ("/v1", "/api/gateway/v1")
# aiohttp's own limit is set far above any configured one: the live limit
# ([server] max_body_mb, reloadable) is enforced while reading the body.
_TRANSPORT_MAX_BODY = 1 << 30


def create_app(settings: Settings) -> web.Application:
    config = load_config(settings.config_path)
    # No middleware: each route renders its own errors (``daemon.errors``).
    app = web.Application(client_max_size=_TRANSPORT_MAX_BODY)
    app[SETTINGS] = settings
    app[CONFIG] = ConfigHolder(Snapshot.build(config))
    app[LISTEN_HOST] = settings.host or config.server.host
    app[EVICTIONS] = Evictions()
    app[ALERTS] = Outbox(config.server.timezone)
    app[OBSERVER] = Observer(
        settings.log_format or config.server.log_format, ledger=lambda: app.get(LEDGER)
    )
    for prefix in PREFIXES:
        for route in JSON_ROUTES:
            app.router.add_post(f"{prefix}/{route}", json_route(route))
        app.router.add_post(
            f"{prefix}/audio/transcriptions", multipart_route("audio/transcriptions")
        )
        app.router.add_get(f"{prefix}/models", models_handler)
        app.router.add_get(f"{prefix}/models/{{model_id:.+}}", models_handler)
        for route in MESSAGES_ROUTES:
            app.router.add_post(f"{prefix}/{route}", messages_route(route))
        app.router.add_get(f"{prefix}/waystone/usage", openai_errors(usage_endpoint.handler))
    app.router.add_post("/api/identify", openai_errors(identify.handler))
    app.router.add_get("/healthz", openai_errors(health.healthz))
    app.router.add_get("/readyz", openai_errors(health.readyz))
    app.router.add_get("/metrics", openai_errors(health.metrics_handler))
    app.router.add_route("*", UNMATCHED_PATH, unmatched)  # last: 404 and 405
    app.cleanup_ctx.extend(
        [
            observer_ctx,
            tracing_ctx,
            ledger_ctx,
            counters_ctx,
            http_ctx,
            alerts_ctx,
            watch_config,
            admin_socket,
            heartbeat,
            pruning,
            evicting,
        ]
    )
    return app


async def observer_ctx(app: web.Application) -> AsyncIterator[None]:
    """The last cleanup: the metrics and log lines of requests that finished while
    stopping (``Observer.request_done`` batches them), and the summary of dropped rows."""
    yield
    app[OBSERVER].flush()
    app[OBSERVER].refused_rows.summarize()


async def ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    from waystone_cli.core.cluster import instance_name, server_url
    from waystone_cli.ledger.connection import open_readwrite
    from waystone_cli.ledger.counters import counter_rows, counters_since
    from waystone_cli.ledger.dialect import Connection
    from waystone_cli.ledger.entities import load_entities
    from waystone_cli.ledger.postgres import open_postgres
    from waystone_cli.ledger.writer import LedgerWriter

    settings = app[SETTINGS]
    config = app[CONFIG].current.config
    ledger, instance = config.ledger, instance_name(config)
    url = server_url(ledger.url, "ledger.url")
    con: Connection
    spill_path = None  # the writer's default: beside the DuckDB file
    if url is None:
        con = open_readwrite(settings.ledger_path, memory_limit_mb=ledger.memory_limit_mb)
    else:
        con = open_postgres(url)
        # Each instance spills to a file of its own: workers share the home folder.
        spill_path = settings.ledger_path.with_name(f"postgres-{instance}.spill.jsonl")
    store = EntityStore()
    users, groups, _links = load_entities(con)
    store.load(users, groups)
    keep = longest_window(config)
    counters = UsageCounters(tz=config.server.timezone, keep=keep)
    counters.load(counter_rows(con, counters_since(keep=keep)))
    writer = LedgerWriter(
        con,
        queue_size=ledger.queue_size,
        batch_size=ledger.batch_size,
        flush_interval_ms=ledger.flush_interval_ms,
        spill_path=spill_path,
        instance=instance,
    )
    await writer.start()
    app[ENTITIES], app[COUNTERS], app[LEDGER] = store, counters, writer
    trim_loaded(app)
    try:
        yield
    finally:
        await writer.close()
        con.close()


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    client = app[HTTP] = HttpClient()
    yield
    client.close()
