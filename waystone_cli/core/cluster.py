"""Who this instance is and where the shared servers are (SPEC §12).

Several instances usually share one config file, so the instance's name comes from the
config only when the operator set one there; else from ``WAYSTONE_INSTANCE``; else the
host name and process id, which differ between any two running instances.  A worker of
``serve --workers`` takes the name its parent gave it (``core.workers``) before all of
these: its siblings share its config and its environment.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from waystone_cli.core.config import Config
from waystone_cli.core.errors import ConfigError
from waystone_cli.core.workers import WORKER_VARIABLE

# The Redis hash in which the instance rebuilding the counters says how far it is
# (``state`` building | done, ``instance``, ``started_at``, ``finished_at``), for
# ``waystone cluster status``.
REBUILD_KEY = "waystone:counters:rebuild"


def instance_name(
    config: Config, environ: Mapping[str, str] | None = None, pid: int | None = None
) -> str:
    env = os.environ if environ is None else environ
    if env.get(WORKER_VARIABLE):
        return env[WORKER_VARIABLE]
    if config.cluster.instance:
        return config.cluster.instance
    if env.get("WAYSTONE_INSTANCE"):
        return env["WAYSTONE_INSTANCE"]
    return f"{socket.gethostname()}-{os.getpid() if pid is None else pid}"


def server_url(
    value: str | None, where: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """A server URL from the config: as written, or the variable an ``env:NAME`` names.

    ``where`` is the TOML path (``cluster.redis_url``), for the error when the variable
    is not set: a shared server that cannot be found is not silently replaced by a
    local one."""
    if value is None or not value.startswith("env:"):
        return value
    env = os.environ if environ is None else environ
    name = value[4:]
    url = env.get(name)
    if not url:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    return url
