"""The cursor of a resumable export: ``waystone usage export --cursor FILE``.

The file is a small JSON object: the id of the ledger it belongs to (``ledger_id``), the
``seq`` of the last row exported and when that was.  Each run exports the rows after
that ``seq`` up to the highest one when it starts, and moves the cursor there only once
its output is complete, so a periodic job exports every row exactly once:

- the cursor is replaced in one step (a temporary file beside it, flushed to disk, then
  renamed over it), so it is always the old one or the new one, never half of either;
- an output file (``--out``) is written in a private folder and moved into place in one
  step (``ledger.export.staged``): an export interrupted halfway leaves no output and
  the old cursor, and the rerun writes the same rows again, from the same place;
- between the two steps the cursor notes the run as ``pending`` (its new ``seq``, the
  output file and the output's SHA-256).  If the run stops after moving the output but
  before committing the cursor, the next run finds that very file in place and takes the
  pending ``seq`` as exported; any other file (or none) means the output never landed,
  and the pending note is dropped.

A run holds an exclusive lock on ``FILE.lock`` from reading the cursor to committing it:
a second export on the same cursor (a periodic job that overlaps its previous run) is
refused at once instead of exporting the same rows again.

Output to stdout has no such note: it is complete only when the command exits with 0;
a reader of a failed run's partial output must drop it (the rerun sends those rows
again).  A cursor from another ledger is refused: its ``seq`` means nothing here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waystone_cli.core.errors import UsageError


@dataclass(frozen=True)
class Cursor:
    path: Path
    ledger_id: str | None  # None: a new cursor, nothing exported yet
    seq: int | None  # the last row exported; None: none yet

    def check_ledger(self, ledger_id: str) -> None:
        if self.ledger_id is not None and self.ledger_id != ledger_id:
            raise UsageError(
                f"the cursor {self.path} belongs to another ledger ({self.ledger_id}; "
                f"this one is {ledger_id}): give a new cursor file to export it from the start"
            )

    def mark_pending(self, *, ledger_id: str, seq: int, out: Path, written: Path) -> None:
        """Note the run about to move ``written`` onto ``out`` (see the module)."""
        pending = {"seq": seq, "out": str(out), "sha256": _digest(written)}
        _write(self.path, self._state(ledger_id, self.seq, pending))

    def commit(self, *, ledger_id: str, seq: int) -> None:
        _write(self.path, self._state(ledger_id, seq, None))

    def _state(self, ledger_id: str, seq: int | None, pending: dict[str, Any] | None) -> Any:
        state: dict[str, Any] = {
            "ledger_id": ledger_id,
            "seq": seq,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if pending is not None:
            state["pending"] = pending
        return state


@contextmanager
def held_cursor(path: Path | None) -> Iterator[Cursor | None]:
    """The cursor in ``path``, locked for this run (None without a cursor)."""
    if path is None:
        yield None
        return
    path = path.expanduser().resolve()
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise UsageError(f"cannot lock the cursor {path}: {err.strerror}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another export is using the cursor {path}") from None
        yield read_cursor(path)
    finally:
        os.close(fd)


def read_cursor(path: Path) -> Cursor:
    """The cursor in ``path`` (a new one when there is no file), its pending run settled."""
    path = path.expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Cursor(path, None, None)
    except OSError as err:
        raise UsageError(f"cannot read the cursor {path}: {err.strerror}") from err
    try:
        state = json.loads(text)
        ledger_id, seq = state["ledger_id"], state["seq"]
        pending = state.get("pending")
        if not isinstance(ledger_id, str) or not (seq is None or type(seq) is int):
            raise TypeError
    except (ValueError, TypeError, KeyError):
        raise UsageError(f"{path} is not an export cursor (written by --cursor)") from None
    if isinstance(pending, dict) and _landed(pending):
        seq = pending["seq"]
    return Cursor(path, ledger_id, seq)


def _landed(pending: dict[str, Any]) -> bool:
    """Whether a pending run's output is in place (the run stopped before committing)."""
    out = pending.get("out")
    if not isinstance(out, str) or type(pending.get("seq")) is not int:
        return False
    try:
        return _digest(Path(out)) == pending.get("sha256")
    except OSError:
        return False


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _write(path: Path, state: Any) -> None:
    """Replace ``path`` with ``state`` in one step, durably."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as err:
        raise UsageError(f"cannot write the cursor {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
