"""Running the daemon: bind, serve until SIGTERM/SIGINT, then flush and stop.

With no gateway key configured, the daemon binds to loopback only.  uvloop is used
when installed.  Handlers are cancelled when their client hangs up, which cancels the
upstream call (the ledger row still gets written, as ``client_closed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from typing import Any

from aiohttp import web

from daemon.app import create_app
from daemon.process.instance import ensure_parent_serves, serving
from daemon.state import CONFIG, LISTEN_HOST, OBSERVER, Settings
from daemon.telemetry.logs import BufferedStderrHandler, flush_periodically, setup_logging
from waystone_cli.core.errors import UsageError
from waystone_cli.core.exposure import open_without_keys

log = logging.getLogger("waystone.daemon")


async def serve(
    settings: Settings,
    ready: asyncio.Event | None = None,
    log_handler: BufferedStderrHandler | None = None,
) -> None:
    flusher = (
        asyncio.create_task(flush_periodically(log_handler), name="waystone-log-flush")
        if log_handler
        else None
    )
    try:
        await _serve(settings, ready)
    finally:
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher


async def _serve(settings: Settings, ready: asyncio.Event | None) -> None:
    app = create_app(settings)
    server = app[CONFIG].current.config.server
    host = app[LISTEN_HOST]
    port = settings.port if settings.port is not None else server.port
    refuse_open_without_keys(host, len(app[CONFIG].current.key_hashes))
    if settings.worker:
        # The parent holds the home's lock; the workers share the port (SO_REUSEPORT).
        ensure_parent_serves(settings.ledger_path)
        await _run(app, host, port, ready, worker=True)
        return
    with serving(settings.ledger_path, f"http://{host}:{port}/v1"):
        await _run(app, host, port, ready)


def refuse_open_without_keys(host: str, key_count: int) -> None:
    """At start (of a daemon, or of ``serve --workers`` before any worker)."""
    if open_without_keys(host, key_count):
        raise UsageError(
            f"refusing to listen on {host} without a gateway key: create one with "
            "`waystone key create NAME`, or listen on 127.0.0.1"
        )


async def _run(
    app: web.Application,
    host: str,
    port: int,
    ready: asyncio.Event | None,
    worker: bool = False,
) -> None:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, **runner_options(app))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    orphaned = (
        asyncio.create_task(_stop_when_orphaned(stop), name="waystone-parent-watch")
        if worker
        else None
    )
    try:
        await web.TCPSite(runner, host, port, backlog=1024, reuse_port=worker or None).start()
        log.info("waystone listening on http://%s:%d/v1", host, port)
        tune_gc()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping: flushing the ledger")
    finally:
        if orphaned is not None:
            orphaned.cancel()
        await runner.cleanup()


async def _stop_when_orphaned(stop: asyncio.Event, every_s: float = 1.0) -> None:
    """A worker whose parent died (SIGKILL leaves no time to forward SIGTERM) stops as
    if it had got SIGTERM: no one would restart or stop it otherwise."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(every_s)
    log.warning("the parent of this worker is gone: stopping")
    stop.set()


def runner_options(app: web.Application) -> dict[str, Any]:
    """aiohttp's options that bound what one client connection can hold or log.

    aiohttp arms its keep-alive timer when a connection opens and again after each
    answer, and closes the connection if complete request headers have not arrived when
    it fires: so ``keepalive_timeout`` bounds slowly sent headers (slowloris, a line it
    cannot parse as a request) and idle keep-alive alike.  A request being handled, a
    long stream included, is never cut by it.  Read at start: a reload does not change
    the listening socket's options.  Its logger writes a malformed request's traceback
    once per cause and counts the rest (``daemon/telemetry/error_log.py``).
    """
    return {
        "keepalive_timeout": app[CONFIG].current.config.server.client_timeout_s,
        "logger": app[OBSERVER].server_log,
    }


# Objects the cyclic collector may see before a young collection: with Python's default
# (700), a busy gateway ran one every ~14 requests, each walking every in-flight
# request's objects; with 10,000 it runs one every few hundred requests.  Most request
# objects are freed by reference counting anyway, so memory hardly moves.
GC_THRESHOLD = (10_000, 10, 10)


def tune_gc() -> None:
    """Tune the cyclic garbage collector for serving, once the app has started.

    ``gc.freeze()`` moves everything alive after start-up (modules, the config, price
    tables, the entity store, the counters: ~90,000 objects) out of the collector's
    reach, so no full collection walks them again; then the young-generation threshold
    is raised (``GC_THRESHOLD``): garbage collection otherwise takes a visible share of
    the CPU and pauses the loop for whole milliseconds (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run(settings: Settings) -> None:
    # What the daemon creates holds captured prompts and usage: its owner's only.  DuckDB
    # creates the ledger's WAL anew after each checkpoint with this mask.
    os.umask(0o077)
    handler = setup_logging(settings.log_format or "text")
    main = serve(settings, log_handler=handler)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
