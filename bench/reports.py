"""Time the usage reports on a large ledger, as whole commands the way an admin runs them.

    python bench/reports.py --rows 10000000 [--home DIR] [--runs 5]

Seeds ``--rows`` synthetic requests (``bench/seed_ledger.py``: 1,000 users, 50 groups,
60 days) into a fresh ``WAYSTONE_HOME`` (or reuses ``--home`` if it already holds a
ledger), then runs each command ``--runs`` times as a separate process, the ledger file
opened read-only, and prints the median and the best wall-clock time against its target.
``waystone --help`` is timed too: the part of every command that is Python start-up.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = [
    (["--help"], None),
    (["usage", "top", "--since", "30d"], 1.5),
    (["usage", "show", "user", "user-42"], 0.8),
    (["usage", "timeline", "--every", "day", "--since", "60d"], 1.5),
    (["usage", "timeline", "--every", "hour", "--since", "7d"], None),
    (["usage", "spikes", "--since", "7d"], None),
]


def waystone() -> list[str]:
    script = shutil.which("waystone")
    return [script] if script else [sys.executable, "-m", "waystone_cli.main"]


def seed(home: Path, rows: int) -> None:
    if (home / "ledger.duckdb").exists():
        print(f"reusing the ledger in {home}")
        return
    env = {**os.environ, "WAYSTONE_HOME": str(home)}
    script = ROOT / "bench" / "seed_ledger.py"
    subprocess.run([sys.executable, str(script), "--rows", str(rows)], env=env, check=True)


def time_command(args: list[str], home: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (user + system) seconds of each run; CPU time is what the
    command costs even when other work shares the cores."""
    env = {**os.environ, "WAYSTONE_HOME": str(home), "COLUMNS": "120"}
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [*waystone(), *args], env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT
        )
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path, help="reuse this WAYSTONE_HOME (seeded if empty)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="waystone-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    seed(home, args.rows)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'command':<50} {'median':>8} {'best':>8} {'cpu':>8} {'target':>8}")
    for command, target in COMMANDS:
        wall, cpu = time_command(command, home, args.runs)
        median = statistics.median(wall)
        verdict = "" if target is None else ("ok" if median <= target else "SLOW")
        print(
            f"{'waystone ' + ' '.join(command):<50} {median:>7.2f}s {min(wall):>7.2f}s "
            f"{statistics.median(cpu):>7.2f}s {(f'{target:.1f}s' if target else '-'):>8} {verdict}"
        )
    if args.home is None:
        shutil.rmtree(home)


if __name__ == "__main__":
    main()
