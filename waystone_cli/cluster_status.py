"""``waystone cluster status``: the instances, the shared servers and the counter rebuild.

One JSON-able report (``cluster_status``), which the command prints as JSON or as
tables.  Each part answers on its own: an unreachable Redis or ledger is a part of the
report (``reachable: false`` and the error), never a failure of the command.

- ``instances``: the heartbeat rows seen recently (``ledger.instances``), read wherever
  the ledger is (through the daemon's admin socket, or the file, or Postgres).
- ``redis``: a ``PING`` with a short timeout, when ``[cluster] redis_url`` is set.
- ``ledger``: whether the instances query could run.
- ``rebuild``: the counters' rebuild state that Redis keeps in ``REBUILD_KEY`` (fields
  ``state`` = building | done, ``instance``, ``started_at``, ``finished_at``); "none"
  when Redis has no such record, "unknown" when Redis does not answer, "n/a" without
  Redis (the counters then live in each instance's memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from waystone_cli.core.cluster import REBUILD_KEY, server_url
from waystone_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from waystone_cli.context import AppContext
    from waystone_cli.core.config import Config

REDIS_TIMEOUT_S = 1.0
_REBUILD_FIELDS = ("instance", "started_at", "finished_at")


def cluster_status(context: AppContext, config: Config) -> dict[str, Any]:
    instances, ledger = _instances(context, config)
    redis, rebuild = _redis(config)
    return {"instances": instances, "redis": redis, "ledger": ledger, "rebuild": rebuild}


def _instances(context: AppContext, config: Config) -> tuple[list[Any], dict[str, Any]]:
    if config.ledger.url is not None:
        ledger = {"backend": "postgres", "location": _hide_password(config.ledger.url)}
    else:
        ledger = {"backend": "duckdb", "location": str(context.ledger_path(config))}
    try:
        instances = context.query("cluster_instances")
    # Whatever the ledger's backend raises is what the report says about it.
    except Exception as err:
        return [], {**ledger, "reachable": False, "error": str(err)}
    return instances, {**ledger, "reachable": True, "error": None}


def _redis(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    rebuild: dict[str, Any] = {"state": "n/a", **dict.fromkeys(_REBUILD_FIELDS)}
    if config.cluster.redis_url is None:
        return {"configured": False, "url": None, "reachable": None, "error": None}, rebuild
    part: dict[str, Any] = {"configured": True, "url": _hide_password(config.cluster.redis_url)}
    try:
        url = str(server_url(config.cluster.redis_url, "cluster.redis_url"))
        part["url"] = _hide_password(url)
        record = _ping_and_read(url)
    except ConfigError as err:
        return {**part, "reachable": False, "error": err.message}, {**rebuild, "state": "unknown"}
    except _redis_errors() as err:
        return {**part, "reachable": False, "error": str(err)}, {**rebuild, "state": "unknown"}
    state = record.get("state") or "none"
    fields = {name: record.get(name) or None for name in _REBUILD_FIELDS}
    return {**part, "reachable": True, "error": None}, {"state": state, **fields}


def _ping_and_read(url: str) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        decode_responses=True,
    )
    try:
        client.ping()
        record: dict[str, str] = client.hgetall(REBUILD_KEY)  # type: ignore[assignment]
        return record
    finally:
        client.close()


def _redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.RedisError, ValueError)  # ValueError: a URL redis-py cannot read


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
