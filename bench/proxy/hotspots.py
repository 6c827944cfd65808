"""Hotspots from a py-spy profile in raw (collapsed stack) format.

Each line of ``py-spy record --format raw`` is ``frame;frame;...;frame COUNT`` with
frames ``function (file:line)``.  Reported here, as shares of all sampled (non-idle)
time: the functions where the time is spent (self), and the request-path functions
that contain it (inclusive, each function counted once per stack).

    python bench/proxy/hotspots.py bench/results/profile-waystone-json-c64.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_TRIM = ("site-packages/", "/work/main/", "lib/python3.11/")
# Inclusive shares are listed for our own code and the few library layers worth naming.
_INCLUSIVE = ("daemon/", "waystone_cli/", "json/", "logging/", "aiohttp/", "duckdb", "uuid")


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in _TRIM:
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append(([short(f) for f in stack.split(";")], int(count)))
    return stacks


def shares(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter[str], Counter[str]]:
    total = sum(n for _, n in stacks)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return total, own, inclusive


def hotspot_lines(path: Path, top: int = 25) -> list[str]:
    total, own, inclusive = shares(read_stacks(path))
    if not total:
        return ["(no samples)"]
    lines = [
        f"{total} samples.",
        "",
        "Self time (where the CPU is):",
        "",
        "| share | function |",
        "|---:|---|",
    ]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in own.most_common(top)]
    lines += [
        "",
        "Inclusive time of our code and named library layers:",
        "",
        "| share | function |",
        "|---:|---|",
    ]
    ours = [(f, n) for f, n in inclusive.most_common() if any(k in f for k in _INCLUSIVE)]
    lines += [f"| {n / total:.1%} | `{f}` |" for f, n in ours[: top * 2]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n".join(hotspot_lines(args.profile, args.top)))


if __name__ == "__main__":
    main()
