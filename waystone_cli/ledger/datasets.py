"""Review datasets: the requests a ``dataset`` rule collected, with their input and output."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from waystone_cli.core.errors import NotFoundError


def datasets(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every dataset with its item count and its first and last item time."""
    rows = con.execute(
        "SELECT dataset, count(*), min(ts), max(ts) FROM dataset_items GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [
        {"name": name, "items": items, "first": first.isoformat(), "last": last.isoformat()}
        for name, items, first, last in rows
    ]


def dataset(con: duckdb.DuckDBPyConnection, dataset_name: str) -> list[dict[str, Any]]:
    """The items of dataset ``dataset_name``, oldest first."""
    # The requests scan is bounded by the items' own time range: rows are in time order,
    # so zone maps skip the rest of a large ledger.
    rows = con.execute(
        """
        WITH items AS (SELECT request_id, ts FROM dataset_items WHERE dataset = ?)
        SELECT i.request_id, i.ts, r.user_id, r.group_id,
               CASE WHEN r.provider IS NULL THEN r.model ELSE r.provider || '/' || r.model END,
               c.input, c.output
        FROM items i
        LEFT JOIN (
            SELECT id, user_id, group_id, provider, model FROM requests
            WHERE ts BETWEEN (SELECT min(ts) FROM items) AND (SELECT max(ts) FROM items)
        ) r ON r.id = i.request_id
        LEFT JOIN content c ON c.request_id = i.request_id
        ORDER BY i.ts, i.request_id
        """,
        [dataset_name],
    ).fetchall()
    if not rows:
        known = [d["name"] for d in datasets(con)]
        listed = ", ".join(known) if known else "none yet"
        raise NotFoundError(f'no dataset named "{dataset_name}" (datasets: {listed})')
    return [
        {
            "request_id": rid,
            "time": ts.isoformat(),
            "user": user,
            "group": group,
            "model": model,
            "input": json.loads(inp) if inp is not None else None,
            "output": out,
        }
        for rid, ts, user, group, model, inp, out in rows
    ]


QUERIES: dict[str, Any] = {"usage_datasets": datasets, "usage_dataset": dataset}
