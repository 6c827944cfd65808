"""Cache reads and writes from a priced record to ``waystone usage show --json``: the
daemon's pricer, its ledger writer on a real DuckDB file, then the CLI reading that file."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from waystone_cli.core.pricing import Pricer
from waystone_cli.core.records import RequestRecord
from waystone_cli.core.usage import Usage
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.ledger.writer import LedgerWriter
from waystone_cli.main import main

MODEL = "claude-sonnet-4-20250514"
# claude-sonnet-4 in genai-prices: $3 input, $0.30 cache read, $3.75 cache write for five
# minutes, $6 for an hour, $15 output per million tokens.  Of 10,000 input tokens 3,000
# were read from the cache and 2,000 written to it, 500 of those for an hour:
# 5,000 x 3 + 3,000 x 0.3 + 1,500 x 3.75 + 500 x 6 + 500 x 15
# = 15,000 + 900 + 5,625 + 3,000 + 7,500 = 32,025 per million
COST = "0.032025"
USAGE = Usage(
    input_tokens=10_000,
    output_tokens=500,
    cached_tokens=3_000,
    cache_write_tokens=2_000,
    cache_write_1h_tokens=500,
)


def _show_json(*args: str) -> dict[str, object]:
    runner = CliRunner()
    with runner.isolation(env={"NO_COLOR": "1", "COLUMNS": "100"}) as (out, err, _):
        code = main(["usage", "show", *args, "--json"])
        sys.stdout.flush()
        assert code == 0, err.getvalue().decode()
        return json.loads(out.getvalue().decode())


async def test_all_four_token_classes_reach_the_report_with_the_exact_cost(
    waystone_home: Path,
) -> None:
    cost = Pricer({}).cost("anthropic", MODEL, USAGE)
    assert cost is not None and format(cost.normalize(), "f") == COST
    record = RequestRecord(
        id="req_cache",
        ts=datetime(2026, 11, 2, 10, 0),
        route="messages",
        status=200,
        user_id="alice",
        provider="anthropic",
        requested_model=MODEL,
        model=MODEL,
        input_tokens=USAGE.input_tokens,
        output_tokens=USAGE.output_tokens,
        cached_tokens=USAGE.cached_tokens,
        cache_write_tokens=USAGE.cache_write_tokens,
        cost_usd=cost,
    )
    con = open_readwrite(waystone_home / "ledger.duckdb")
    writer = LedgerWriter(con)
    await writer.start()
    writer.submit(record)
    await writer.close()
    con.close()

    usage = {
        "requests": 1,
        "input_tokens": 10_000,
        "output_tokens": 500,
        "cached_tokens": 3_000,
        "cache_write_tokens": 2_000,
        "total_tokens": 10_500,
        "cost_usd": float(COST),
        "unpriced_requests": 0,
    }
    # A whole day (from the rollup) and a partial one (from the raw rows) agree.
    for since in ("2026-11-02", "2026-11-02T09:00:00"):
        shown = _show_json("user", "alice", "--since", since, "--until", "2026-11-03")
        assert {k: shown[k] for k in usage} == usage
        assert shown["models"] == [{"model": f"anthropic/{MODEL}", **usage}]
