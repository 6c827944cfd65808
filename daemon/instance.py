"""One daemon per home: a lock file beside the ledger says which process serves it.

A second ``waystone serve`` on the same ledger would otherwise fail deep in DuckDB with
a file-lock error.  The running daemon holds an exclusive ``flock`` on
``<ledger>.serving`` and writes its PID and URL into it; the kernel drops the lock when
the process ends, even by SIGKILL, so a stale file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from waystone_cli.core.errors import WaystoneError


def lock_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + ".serving")


@contextmanager
def serving(ledger_path: Path, url: str) -> Iterator[None]:
    """Hold the home's serving lock while the daemon runs; refuse if another holds it."""
    with _locked(ledger_path) as fd:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode(), 0)
        yield


def ensure_not_serving(ledger_path: Path) -> None:
    """Refuse early (before ``serve`` prints what it would serve) if a daemon holds it."""
    with _locked(ledger_path):
        pass


@contextmanager
def _locked(ledger_path: Path) -> Iterator[int]:
    path = lock_path(ledger_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WaystoneError(f"already serving this home ({_holder(fd, path)})") from None
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int, path: Path) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"PID {int(holder['pid'])}, {holder['url']}"
    except (ValueError, KeyError, TypeError):
        return f"another process holds {path}"
