"""Config reload: a file watch (polling the file's identity and mtime) and SIGHUP.

A new config replaces the old one in one step only if it validates completely;
otherwise the old one stays in force and the error is logged with its TOML path (and
shown by ``/readyz``).  Two valid-looking files are refused too: a file that vanished
or holds nothing (an editor saving by truncate-then-write shows one for an instant,
and swapping it in would drop every provider), and a config without a gateway key
while the daemon listens beyond loopback (it would serve the network without a key).
Polling keeps this dependency-free and works on every filesystem; a change is loaded
once the file stayed the same for one interval (0.5 s), so a CLI change takes effect
within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from daemon.state import CONFIG, LISTEN_HOST, SETTINGS, Snapshot
from waystone_cli.core.config import Config, parse_config_text, parse_toml, read_config_text
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.exposure import open_without_keys

log = logging.getLogger("waystone.config")


def reload_now(app: web.Application) -> bool:
    """Load and validate the config file; swap it in if valid.  Returns success."""
    holder = app[CONFIG]
    path = app[SETTINGS].config_path
    try:
        config = _reloadable(path, app[LISTEN_HOST])
    except ConfigError as err:
        holder.last_error = err.message
        log.error("config not reloaded, the previous one stays in force: %s", err.message)
        return False
    had_keys = bool(holder.current.key_hashes)
    holder.current = Snapshot.build(config)
    holder.last_error = None
    log.info("config reloaded from %s", path)
    if had_keys and not config.keys:
        log.warning("the last gateway key is gone: loopback clients are served without one")
    return True


def _reloadable(path: Path, host: str) -> Config:
    """The config to swap in, or a ConfigError saying why the one in force stays."""
    text = read_config_text(path)
    if text is None:
        raise ConfigError(f"{path}: the file is missing")
    if not parse_toml(text, str(path)):
        raise ConfigError(f"{path}: the file is empty")
    _, config = parse_config_text(text, str(path))
    if open_without_keys(host, len(config.keys)):
        raise ConfigError(
            f"the new config has no gateway key, and the gateway listens on {host}: "
            "beyond loopback it never runs without one"
        )
    return config


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


async def _watch(app: web.Application, interval: float) -> None:
    path = app[SETTINGS].config_path
    last = pending = _stamp(path)
    while True:
        await asyncio.sleep(interval)
        stamp = _stamp(path)
        # Reloaded once it stayed the same for one interval: a writer that truncates and
        # then writes shows an empty or partial file for an instant.
        if stamp == pending and stamp != last:
            last = stamp
            reload_now(app)
        pending = stamp


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
