"""The cost of one settle's bucket addition (``Series.add``), against another version.

    python bench/counter_add.py                         # this checkout's Series alone
    python bench/counter_add.py --against OLD_SERIES.py # e.g. a file from `git show`

The two take turns, round after round, and the fastest round of each is reported with
their ratio: on a shared machine the medians drift, the minima much less.
"""

from __future__ import annotations

import argparse
import importlib.util
import timeit
from pathlib import Path
from types import ModuleType
from typing import Any

from waystone_cli.core import counter_series

VALUES = (210_000, 12, 5, 1)  # a small chat: cost units, input, output, requests


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_series", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _round(module: Any, number: int) -> float:
    series = module.Series()
    series.totals("1h", 0)  # two cached windows, as a user with two rules has
    series.totals("day", 0)
    seconds = min(timeit.repeat(lambda: series.add(1000, VALUES), number=number, repeat=5))
    return seconds / number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another counter_series.py to compare")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    modules = {"this": counter_series}
    if args.against:
        modules["other"] = _load(args.against)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, module in modules.items():
            best[name] = min(best.get(name, float("inf")), _round(module, 5000))
    for name, ns in best.items():
        print(f"{name}: {ns:.0f} ns per Series.add (same minute, fastest round)")
    if "other" in best:
        print(f"this / other: {best['this'] / best['other']:.2f}")


if __name__ == "__main__":
    main()
