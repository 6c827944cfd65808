"""What ``waystone serve --workers N`` needs and how it names its workers (SPEC §12).

Several workers on one machine are several instances: each has its own counters and
ledger connection unless they share Redis and Postgres, and a DuckDB file opens in one
process only.  So more than one worker requires both servers, checked before anything
starts.  Each worker is named after its parent (``<name>-w<i>``, ``i`` from 1), passed
in ``WAYSTONE_WORKER``: the config usually names the parent (``[cluster] instance``),
and the workers sharing that config must still differ.
"""

from __future__ import annotations

from waystone_cli.core.config import Config
from waystone_cli.core.errors import UsageError

# Set by the parent in each worker's environment: the worker's instance name.
WORKER_VARIABLE = "WAYSTONE_WORKER"


def require_shared_servers(config: Config, workers: int) -> None:
    """Refuse more than one worker unless the counters and the ledger are shared."""
    if workers <= 1:
        return
    missing = []
    if config.cluster.redis_url is None:
        missing.append("[cluster] redis_url")
    if config.ledger.url is None:
        missing.append("[ledger] url")
    if missing:
        raise UsageError(
            f"serve --workers {workers} needs {' and '.join(missing)}: the workers share "
            "their counters through Redis and their ledger in Postgres (one DuckDB file "
            "opens in one process only)"
        )


def worker_names(parent: str, workers: int) -> list[str]:
    return [f"{parent}-w{i}" for i in range(1, workers + 1)]
