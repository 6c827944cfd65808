"""Config reload: a file watch (polling the file's identity and mtime) and SIGHUP.

A new config replaces the old one in one step only if it validates completely;
otherwise the old one stays in force and the error is logged with its TOML path.
Polling keeps this dependency-free and works on every filesystem; the interval
(0.5 s) makes a CLI change take effect within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from daemon.state import CONFIG, SETTINGS, Snapshot
from waystone_cli.core.config import load_config
from waystone_cli.core.errors import ConfigError

log = logging.getLogger("waystone.config")


def reload_now(app: web.Application) -> bool:
    """Load and validate the config file; swap it in if valid.  Returns success."""
    holder = app[CONFIG]
    path = app[SETTINGS].config_path
    try:
        config = load_config(path)
    except ConfigError as err:
        holder.last_error = err.message
        log.error("config not reloaded, the previous one stays in force: %s", err.message)
        return False
    holder.current = Snapshot.build(config)
    holder.last_error = None
    log.info("config reloaded from %s", path)
    return True


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


async def _watch(app: web.Application, interval: float) -> None:
    path = app[SETTINGS].config_path
    last = _stamp(path)
    while True:
        await asyncio.sleep(interval)
        stamp = _stamp(path)
        if stamp != last:
            last = stamp
            reload_now(app)


async def watch_config(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        _watch(app, app[SETTINGS].watch_interval_s), name="waystone-config-watch"
    )
    loop = asyncio.get_running_loop()
    hup = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, reload_now, app)
        hup = True
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
