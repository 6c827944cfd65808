"""One daemon per home: a lock file beside the ledger says which process serves it.

A second ``waystone serve`` on the same ledger would otherwise fail deep in DuckDB with
a file-lock error.  The running daemon holds an exclusive ``flock`` on
``<ledger>.serving`` and writes its PID and URL into it; the kernel drops the lock when
the process ends, even by SIGKILL, so a stale file never blocks a restart.

Under ``serve --workers`` the parent holds the lock and its workers join it: a worker
checks that the lock is held and that its holder is the worker's own parent, so a second,
unrelated ``serve`` is refused as before and a worker never runs on a home nobody holds.
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
def serving(ledger_path: Path, url: str, workers: int = 1) -> Iterator[None]:
    """Hold the home's serving lock while the daemon runs; refuse if another holds it."""
    with _locked(ledger_path) as fd:
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "url": url, "workers": workers}
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield


def ensure_parent_serves(ledger_path: Path) -> None:
    """A worker's check: the home's lock is held, by this process's parent."""
    path = lock_path(ledger_path)
    try:
        with _locked(ledger_path):
            pass
    except WaystoneError:
        fd = os.open(path, os.O_RDONLY)
        try:
            pid = _holder_pid(fd)
        finally:
            os.close(fd)
        if pid == os.getppid():
            return
        raise
    raise WaystoneError(
        f"a worker serves only under `waystone serve --workers N`, which holds {path}"
    )


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


def _holder_pid(fd: int) -> int | None:
    try:
        return int(json.loads(os.pread(fd, 4096, 0))["pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _holder(fd: int, path: Path) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"PID {int(holder['pid'])}, {holder['url']}"
    except (ValueError, KeyError, TypeError):
        return f"another process holds {path}"
