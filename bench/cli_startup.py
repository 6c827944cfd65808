"""How fast does ``waystone user list`` answer on a config with 1,000 users?

Writes such a config into a temporary WAYSTONE_HOME (no ledger, no daemon: the command
must not import DuckDB then), runs the command as a whole process RUNS times, and
prints the median next to baselines: ``python -c pass`` and ``import typer``.
Target: well under 0.5 s.  (typer is pinned below 0.24: later releases validate
options through pydantic, about 0.25 s more at every start.)

    python bench/cli_startup.py [--runs 10] [--users 1000]

``python -X importtime -m waystone_cli.main user list`` shows where import time goes.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_config(home: Path, users: int) -> None:
    lines = ['[groups.acme]\nmetadata = { region = "eu" }\n']
    for i in range(users):
        tier = "free" if i % 3 else "pro"
        lines.append(
            f'[users.user-{i}]\nmetadata = {{ tier = "{tier}", n = {i} }}\ngroups = ["acme"]\n'
        )
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


def median_seconds(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of the child process.

    On a shared, busy machine the wall time mostly measures waiting for a core; the CPU
    time is what the command itself costs, close to its wall time on an idle machine."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    # An installed package has its bytecode compiled; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module at every start.
    compileall.compile_dir(ROOT / "waystone_cli", quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        write_config(home, args.users)
        env = {**os.environ, "WAYSTONE_HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("WAYSTONE_CONFIG", None)
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import typer'", [sys.executable, "-c", "import typer"]),
            ("waystone user list", [sys.executable, "-m", "waystone_cli.main", "user", "list"]),
            (
                "waystone user list --json",
                [sys.executable, "-m", "waystone_cli.main", "user", "list", "--json"],
            ),
        ]
        print(
            f"{args.users} users, median of {args.runs} runs; load average {os.getloadavg()[0]:.1f}"
        )
        print(f"  {'':<32} {'wall':>8} {'cpu':>8}")
        for label, argv in cases:
            wall, cpu = median_seconds(argv, env, args.runs)
            print(f"  {label:<32} {wall:>7.3f}s {cpu:>7.3f}s")


if __name__ == "__main__":
    main()
