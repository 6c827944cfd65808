"""The serving lock: one serve per home, which lets its own workers in and no one else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.process.instance import ensure_not_serving, ensure_parent_serves, serving
from waystone_cli.core.errors import WaystoneError

CHECK = "import sys; from pathlib import Path; from daemon.process.instance import ensure_parent_serves; "


def child(ledger: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_serve_is_refused_with_the_holder(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.duckdb"
    held = serving(ledger, "http://127.0.0.1:1/v1", workers=2)
    refused = pytest.raises(WaystoneError, match=r"already serving this home \(PID \d+, http")
    with held, refused:
        ensure_not_serving(ledger)
    ensure_not_serving(ledger)


def test_a_worker_of_the_holder_may_join(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.duckdb"
    with serving(ledger, "http://127.0.0.1:1/v1", workers=2):
        run = child(ledger, f"ensure_parent_serves(Path({str(ledger)!r}))")
    assert (run.returncode, run.stderr) == (0, "")


def test_a_process_whose_parent_does_not_hold_the_lock_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.duckdb"
    # A grandchild: its parent is the child, not the holder.
    grandchild = (
        "import subprocess; r = subprocess.run([sys.executable, '-c', "
        f"{CHECK + f'ensure_parent_serves(Path({str(ledger)!r}))'!r}], "
        "capture_output=True, text=True); sys.stderr.write(r.stderr); sys.exit(r.returncode)"
    )
    with serving(ledger, "http://127.0.0.1:1/v1", workers=2):
        run = child(ledger, grandchild)
    assert run.returncode == 1
    assert "already serving this home (PID" in run.stderr


def test_a_worker_with_no_parent_serving_is_refused(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.duckdb"
    with pytest.raises(WaystoneError, match=r"serves only under `waystone serve --workers N`"):
        ensure_parent_serves(ledger)
