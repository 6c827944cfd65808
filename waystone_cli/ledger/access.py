"""Run a ledger query wherever the ledger is: in the daemon, or in the file.

DuckDB lets one process open a file read-write and then no other process may open it.
So while the daemon runs, the CLI asks it to run the query (HTTP over its admin Unix
socket, readable only by its owner); when no daemon answers, the CLI opens the file
read-only and runs the same function itself.  Query functions take a DuckDB connection
and keyword parameters and return JSON-able data; both paths pass the result through
JSON so the answers are identical.

With a Postgres ledger (``[ledger] url``) there is no lock to work around: the CLI
connects to the server itself, from any machine, and runs the same function there; no
daemon is asked and none needs to run.

Only the standard library is used on the client side, to keep CLI start-up fast.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from waystone_cli.core.errors import WaystoneError

Query = Callable[..., Any]


class LedgerUnavailable(WaystoneError):
    code = "ledger_unavailable"


def registry() -> dict[str, Query]:
    """Every query the admin socket may run, by name."""
    from waystone_cli.ledger import (
        alerts,
        counters,
        entities,
        instances,
        pricing_queries,
        reports,
    )

    return {
        **alerts.QUERIES,
        **entities.QUERIES,
        **reports.QUERIES,
        **pricing_queries.QUERIES,
        **counters.QUERIES,
        **instances.QUERIES,
    }


def run_query(
    name: str,
    *,
    ledger_path: Path,
    socket_path: Path,
    ledger_url: str | None = None,
    **params: Any,
) -> Any:
    """Run query ``name`` on Postgres when ``ledger_url`` is set; else through the daemon
    if it is up, else on the file read-only."""
    if ledger_url is not None:
        return run_postgres(name, ledger_url, **params)
    answer = _ask_daemon(socket_path, name, params)
    if answer is not _NO_DAEMON:
        return answer
    return run_local(name, ledger_path, **params)


def run_local(name: str, ledger_path: Path, **params: Any) -> Any:
    from waystone_cli.ledger.connection import open_readonly

    query = registry().get(name)
    if query is None:
        raise WaystoneError(f"unknown ledger query {name!r}")
    with open_readonly(ledger_path) as con:
        return json.loads(json.dumps(query(con, **params), default=str))


def run_postgres(name: str, url: str, **params: Any) -> Any:
    """Run query ``name`` on the Postgres ledger at ``url`` (migrated first, as a
    daemon's start would: a schema newer than this code is refused)."""
    from waystone_cli.ledger.postgres import open_postgres

    query = registry().get(name)
    if query is None:
        raise WaystoneError(f"unknown ledger query {name!r}")
    con = open_postgres(url)
    try:
        return json.loads(json.dumps(query(con, **params), default=str))
    finally:
        con.close()


def run_write(
    name: str,
    *,
    ledger_path: Path,
    socket_path: Path,
    ledger_url: str | None = None,
    **params: Any,
) -> Any:
    """Run a query that changes the ledger (pruning): on Postgres when ``ledger_url`` is
    set; else in the daemon, else on the file read-write."""
    if ledger_url is not None:
        return run_postgres(name, ledger_url, **params)
    answer = _ask_daemon(socket_path, name, params)
    if answer is not _NO_DAEMON:
        return answer
    from waystone_cli.ledger.connection import open_readwrite

    query = registry().get(name)
    if query is None:
        raise WaystoneError(f"unknown ledger query {name!r}")
    con = open_readwrite(ledger_path)
    try:
        return json.loads(json.dumps(query(con, **params), default=str))
    finally:
        con.close()


def ask_live(socket_path: Path, name: str, **params: Any) -> Any:
    """What only the running daemon knows (its live rate windows): None when it is down."""
    answer = _ask_daemon(socket_path, name, params, route="/live")
    return None if answer is _NO_DAEMON else answer


_NO_DAEMON = object()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _ask_daemon(socket_path: Path, name: str, params: dict[str, Any], route: str = "/query") -> Any:
    if not socket_path.exists():
        return _NO_DAEMON
    conn = _UnixConnection(socket_path, timeout=300.0)
    try:
        conn.request(
            "POST",
            route,
            body=json.dumps({"name": name, "params": params}),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        payload = json.loads(response.read() or b"{}")
    except (ConnectionRefusedError, FileNotFoundError):
        return _NO_DAEMON  # a stale socket left by a daemon that is gone
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise LedgerUnavailable(f"the daemon's admin socket did not answer: {err}") from err
    finally:
        conn.close()
    if response.status != 200:
        message = payload.get("error", {}).get("message", f"status {response.status}")
        raise WaystoneError(message)
    return payload["result"]
