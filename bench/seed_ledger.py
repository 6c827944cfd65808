"""Fill the ledger the current config points at with synthetic but realistic requests.

    python bench/seed_ledger.py --rows 10000000 --users 1000 --groups 50 --days 60

Rows are generated inside DuckDB (``range()`` and ``hash()``), never row by row in
Python, so ten million rows take seconds.  They are deterministic (no ``random()``), in
time order over the last ``--days`` days like a real ledger, and skewed: the user index
is ``users x r^3`` for a uniform ``r``, so ``user-0`` and its neighbours dominate.  Each
user belongs to ``group-<user mod groups>``; a quarter of the requests name no group and
2% are anonymous.  Models carry real-ish list prices (USD per million tokens); one
self-hosted model is unpriced (NULL cost), and 0.5% of requests are blocked (no tokens).
After the rows come the daily rollup and the users, groups and links tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from waystone_cli import paths  # noqa: E402
from waystone_cli.context import AppContext  # noqa: E402
from waystone_cli.ledger.connection import open_readwrite  # noqa: E402
from waystone_cli.ledger.rollup import rebuild_rollup  # noqa: E402

# (provider, model, input $/M, output $/M, weight out of 20)
MODELS = [
    ("openai", "gpt-4o", 2.5, 10.0, 4),
    ("openai", "gpt-4o-mini", 0.15, 0.6, 6),
    ("openai", "o3", 2.0, 8.0, 1),
    ("openai", "o3-mini", 1.1, 4.4, 2),
    ("anthropic", "claude-sonnet-4", 3.0, 15.0, 3),
    ("anthropic", "claude-3-5-haiku", 0.8, 4.0, 2),
    ("google", "gemini-2.5-flash", 0.3, 2.5, 1),
    ("local", "llama-3.1-70b", None, None, 1),
]

INSERT = """
INSERT INTO requests (id, ts, user_id, group_id, provider, requested_model, model, route,
                      stream, status, outcome, input_tokens, output_tokens, cached_tokens,
                      cost_usd, priced, latency_ms, ttft_ms, overhead_ms)
WITH models AS (
    SELECT * FROM (VALUES {models}) m(slot, provider, model, pin, pout)
),
base AS (
    SELECT i,
           ?::TIMESTAMP + to_microseconds((i * ?::DOUBLE / ?)::BIGINT) AS ts,
           (hash(i, 1) % 1000000) / 1e6 AS ru,
           hash(i, 2) % 100 AS rg,
           hash(i, 3) % 20 AS slot,
           (hash(i, 4) % 1000000) / 1e6 AS rin,
           (hash(i, 5) % 1000000) / 1e6 AS rout,
           hash(i, 6) % 1000 AS rb
    FROM range(?) t(i)
),
shaped AS (
    SELECT *, floor(? * ru * ru * ru)::BIGINT AS u, rb < 5 AS blocked,
           CASE WHEN rb < 5 THEN 0 ELSE 20 + floor(4000 * rin * rin)::BIGINT END AS tin,
           CASE WHEN rb < 5 THEN 0 ELSE 5 + floor(1500 * rout * rout)::BIGINT END AS tout
    FROM base
)
SELECT 'req-' || i, ts,
       CASE WHEN rg < 2 THEN NULL ELSE 'user-' || u END,
       CASE WHEN rg BETWEEN 1 AND 26 THEN NULL ELSE 'group-' || (u % ?) END,
       m.provider, m.model, m.model, '/v1/chat/completions', rb % 3 = 0,
       CASE WHEN blocked THEN 429 ELSE 200 END, CASE WHEN blocked THEN 'blocked' ELSE 'ok' END,
       tin, tout, tin // 4,
       CASE WHEN m.pin IS NULL THEN NULL
            ELSE ((tin * m.pin + tout * m.pout) / 1e6)::DECIMAL(18, 10) END,
       m.pin IS NOT NULL, 200 + rb * 3.0, 80 + rb * 0.5, 0.3 + (rb % 10) * 0.05
FROM shaped JOIN models m USING (slot)
"""

ENTITIES = [
    "DELETE FROM links",
    "DELETE FROM users",
    "DELETE FROM groups",
    """INSERT INTO users SELECT user_id, min(ts), max(ts), '{}' FROM requests
       WHERE user_id IS NOT NULL GROUP BY 1""",
    """INSERT INTO groups SELECT group_id, min(ts), max(ts), '{"plan": "team"}' FROM requests
       WHERE group_id IS NOT NULL GROUP BY 1""",
    """INSERT INTO links SELECT user_id, group_id, min(ts) FROM requests
       WHERE user_id IS NOT NULL AND group_id IS NOT NULL GROUP BY 1, 2""",
]


def _models_sql() -> str:
    values = []
    slot = 0
    for provider, model, pin, pout, weight in MODELS:
        for _ in range(weight):
            price = "NULL, NULL" if pin is None else f"{pin}, {pout}"
            values.append(f"({slot}, '{provider}', '{model}', {price})")
            slot += 1
    assert slot == 20
    return ", ".join(values)


def seed(ledger: Path, rows: int, users: int, groups: int, days: int, replace: bool) -> None:
    con = open_readwrite(ledger)
    try:
        existing = con.execute("SELECT count(*) FROM requests").fetchone()
        if existing and existing[0] and not replace:
            sys.exit(f"{ledger} already holds {existing[0]} requests (use --replace)")
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        start = now - timedelta(days=days)
        span_us = days * 86_400_000_000
        t0 = time.perf_counter()
        con.execute("DELETE FROM requests")
        con.execute(
            INSERT.format(models=_models_sql()), [start, span_us, rows, rows, users, groups]
        )
        t1 = time.perf_counter()
        rebuild_rollup(con)
        for sql in ENTITIES:
            con.execute(sql)
        con.execute("CHECKPOINT")
        t2 = time.perf_counter()
        daily = con.execute("SELECT count(*) FROM usage_daily").fetchone()
        print(
            f"seeded {rows:,} requests into {ledger} in {t1 - t0:.1f} s; "
            f"rollup ({daily[0] if daily else 0:,} rows) and entities in {t2 - t1:.1f} s"
        )
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--config", help="config file (default: as waystone finds it)")
    parser.add_argument("--replace", action="store_true", help="delete existing requests first")
    args = parser.parse_args()
    ledger = AppContext(config_path=paths.config_path(args.config)).ledger_path()
    seed(ledger, args.rows, args.users, args.groups, args.days, args.replace)


if __name__ == "__main__":
    main()
