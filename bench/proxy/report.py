"""The benchmark's Markdown report: the results table, the targets, the ledger check."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from statistics import median

from load import WrkResult

RPS_RATIO_MIN = 0.5
P99_RATIO_MAX = 3.0
RSS_MAX_MB = 150.0


@dataclass(frozen=True)
class Measurement:
    gateway: str
    mode: str
    connections: int
    warm: WrkResult
    run: WrkResult
    peak_rss_mb: float
    cpu_s: float
    start: datetime
    end: datetime


@dataclass(frozen=True)
class LedgerCheck:
    gateway: str
    mode: str
    connections: int
    completed: int
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.outcomes.values())

    @property
    def lost(self) -> int:
        """Responses wrk received that have no ``ok`` row (must be 0)."""
        return max(0, self.completed - self.outcomes.get("ok", 0))

    def extra_allowed(self) -> int:
        # wrk stops with up to one request in flight per connection, twice per case
        # (warm-up and run); those get rows (ok or client_closed) but are not counted.
        return 2 * self.connections


def _med(values: list[float]) -> float:
    return median(values) if values else 0.0


def summary(ms: list[Measurement]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Median over repeats per (gateway, mode, connections)."""
    keys = dict.fromkeys((m.gateway, m.mode, m.connections) for m in ms)  # run order
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for key in keys:
        runs = [m for m in ms if (m.gateway, m.mode, m.connections) == key]
        out[key] = {
            "rps": _med([m.run.rps for m in runs]),
            "p50": _med([m.run.p50_ms for m in runs]),
            "p99": _med([m.run.p99_ms for m in runs]),
            "errors": float(sum(m.run.errors + m.warm.errors for m in runs)),
            "rss": max(m.peak_rss_mb for m in runs),
            "cpu": _med([m.cpu_s / m.run.seconds for m in runs]),
            "rps_cpu": _med([m.run.requests / m.cpu_s if m.cpu_s else 0.0 for m in runs]),
        }
    return out


def results_table(ms: list[Measurement], baseline: str) -> list[str]:
    stats = summary(ms)
    lines = [
        "| gateway | mode | conc | rps | p50 ms | p99 ms | errors | peak RSS MB | gateway CPU | "
        f"rps per CPU-s | rps ratio vs {baseline} | p99 ratio vs {baseline} | "
        f"per-CPU-s ratio vs {baseline} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (gw, mode, conns), s in stats.items():
        base = stats.get((baseline, mode, conns))
        rps_ratio = (
            f"{s['rps'] / base['rps']:.2f}" if base and gw != baseline and base["rps"] else ""
        )
        p99_ratio = (
            f"{s['p99'] / base['p99']:.2f}" if base and gw != baseline and base["p99"] else ""
        )
        cpu_ratio = (
            f"{s['rps_cpu'] / base['rps_cpu']:.2f}"
            if base and gw != baseline and base["rps_cpu"]
            else ""
        )
        lines.append(
            f"| {gw} | {mode} | {conns} | {s['rps']:,.0f} | {s['p50']:.1f} | {s['p99']:.1f} | "
            f"{s['errors']:.0f} | {s['rss']:.0f} | {s['cpu']:.0%} | {s['rps_cpu']:,.0f} | "
            f"{rps_ratio} | {p99_ratio} | {cpu_ratio} |"
        )
    return lines


def targets(ms: list[Measurement], baseline: str, gateway: str) -> list[str]:
    """SPEC §11's bar, case by case: rps >= 0.5x, p99 <= 3x, zero errors, RSS < 150 MB."""
    stats = summary(ms)
    lines = []
    for (gw, mode, conns), s in stats.items():
        base = stats.get((baseline, mode, conns))
        if gw != gateway or base is None:
            continue
        checks = [
            (
                f"rps {s['rps'] / base['rps']:.2f}x >= {RPS_RATIO_MIN}x",
                s["rps"] >= RPS_RATIO_MIN * base["rps"],
            ),
            (
                f"p99 {s['p99'] / base['p99']:.2f}x <= {P99_RATIO_MAX}x",
                s["p99"] <= P99_RATIO_MAX * base["p99"],
            ),
            (f"errors {s['errors']:.0f} = 0", s["errors"] == 0),
            (f"RSS {s['rss']:.1f} MB < {RSS_MAX_MB:.0f} MB", s["rss"] < RSS_MAX_MB),
        ]
        verdicts = ", ".join(f"{text} {'PASS' if ok else 'FAIL'}" for text, ok in checks)
        # On a shared machine the gateways do not get the same CPU share; requests per
        # CPU-second is what a dedicated core would turn into requests per second.
        verdicts += f" (per CPU-second: {s['rps_cpu'] / base['rps_cpu']:.2f}x)"
        lines.append(f"- {gw} {mode} c{conns}: {verdicts}")
    return lines


def ledger_table(checks: list[LedgerCheck]) -> list[str]:
    lines = [
        "| gateway | mode | conc | wrk responses (warm-up + run) | ledger rows | ok | other outcomes "
        "| lost | verdict |",
        "|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for c in checks:
        other = ", ".join(f"{k}: {v}" for k, v in sorted(c.outcomes.items()) if k != "ok") or "-"
        extra = c.rows - c.completed
        ok = c.lost == 0 and 0 <= extra <= c.extra_allowed()
        verdict = "PASS" if ok else f"FAIL (extra {extra}, allowed 0..{c.extra_allowed()})"
        lines.append(
            f"| {c.gateway} | {c.mode} | {c.connections} | {c.completed:,} | {c.rows:,} | "
            f"{c.outcomes.get('ok', 0):,} | {other} | {c.lost} | {verdict} |"
        )
    return lines
