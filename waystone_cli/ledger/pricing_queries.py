"""Ledger queries about prices: which models the gateway served without knowing their price."""

from __future__ import annotations

from typing import Any

import duckdb


def unpriced_models(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Each (provider, model) with unpriced requests: how many, first and last seen (UTC).

    Only requests that had usage are marked unpriced (a refused request has nothing to
    price), so every row here is traffic whose cost is unknown.
    """
    rows = con.execute(
        """
        SELECT provider, model, count(*) AS requests, min(ts) AS first_seen, max(ts) AS last_seen
        FROM requests
        WHERE NOT priced AND model IS NOT NULL
        GROUP BY provider, model
        ORDER BY requests DESC, provider, model
        """
    ).fetchall()
    return [
        {
            "provider": provider,
            "model": model,
            "requests": int(requests),
            "first_seen": first.isoformat(),
            "last_seen": last.isoformat(),
        }
        for provider, model, requests, first, last in rows
    ]


QUERIES: dict[str, Any] = {"unpriced_models": unpriced_models}
