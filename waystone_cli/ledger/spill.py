"""The writer's overflow file: ledger rows kept on disk as JSON lines until inserted.

Rows land here when the writer's queue is full or when a batch insert fails.  Each row is
one JSON object per line, flushed to the OS at once so a killed process keeps it.  The
writer renames the file to ``*.draining`` before reading it, so appends never race the
reader; lines are processed in file order, which is what makes ``flush()`` exact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger.rows import Rejected

log = logging.getLogger("waystone.ledger")

_FIELDS = tuple(f.name for f in fields(RequestRecord))


def encode(record: RequestRecord) -> str:
    """One JSON line (no newline) that ``decode`` turns back into an equal record."""
    row = {name: getattr(record, name) for name in _FIELDS}
    return json.dumps(row, default=_jsonable, ensure_ascii=False, separators=(",", ":"))


def decode(line: str) -> RequestRecord:
    row = json.loads(line)
    row["ts"] = datetime.fromisoformat(row["ts"])
    if row.get("cost_usd") is not None:
        row["cost_usd"] = Decimal(row["cost_usd"])
    return RequestRecord(**{k: v for k, v in row.items() if k in _FIELDS})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    # Captured content is the client's JSON; anything else is kept as its text.
    return str(value)


def draining_path(spill_path: Path) -> Path:
    return spill_path.with_name(spill_path.name + ".draining")


def rejected_path(spill_path: Path) -> Path:
    return spill_path.with_name(spill_path.name + ".rejected")


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


@dataclass(frozen=True, slots=True)
class Chunk:
    """What ``read_chunk`` read: the rows, the lines that are not rows, where it stopped."""

    records: list[RequestRecord]
    unreadable: list[Unreadable]
    lines: int
    offset: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A spill line that does not decode (a write cut short by a crash), and why."""

    raw: bytes
    reason: str


def read_chunk(path: Path, offset: int, limit: int) -> Chunk:
    """Up to ``limit`` lines from byte ``offset``.

    A line that does not decode is returned apart rather than blocking the rest; the
    writer sets it aside (``RejectedFile``) once the chunk is consumed, so a chunk
    read again after a failed insert does not set it aside twice.
    """
    records: list[RequestRecord] = []
    unreadable: list[Unreadable] = []
    lines = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        while lines < limit:
            raw = fh.readline()
            if not raw:
                break
            lines += 1
            try:
                records.append(decode(raw.decode("utf-8")))
            except (ValueError, TypeError, KeyError, ArithmeticError) as err:
                unreadable.append(Unreadable(raw=raw, reason=f"{type(err).__name__}: {err}"))
        return Chunk(records=records, unreadable=unreadable, lines=lines, offset=fh.tell())


class RejectedFile:
    """Where rows the ledger cannot store are kept, one line each, with the reason.

    A row is written as its spill line plus a ``_rejected`` key with the reason
    (``decode`` ignores it, so the line can be replayed once the cause is fixed); a line
    that did not decode is kept as it was, its reason only logged.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def keep(self, rejected: Sequence[Rejected], unreadable: Sequence[Unreadable]) -> None:
        self.count += len(rejected) + len(unreadable)
        lines = []
        for entry in unreadable:
            log.warning("ledger spill line is unreadable (%s); kept in %s", entry.reason, self.path)
            lines.append(entry.raw if entry.raw.endswith(b"\n") else entry.raw + b"\n")
        for row in rejected:
            log.warning(
                "ledger row %s cannot be stored (%s); kept in %s",
                row.record.id,
                row.reason,
                self.path,
            )
            line = encode(row.record)[:-1] + "," + json.dumps({"_rejected": row.reason})[1:]
            lines.append(line.encode("utf-8", "backslashreplace") + b"\n")
        try:
            with open_private(self.path, "ab") as out:
                out.write(b"".join(lines))
        except OSError as err:
            log.error("ledger: cannot keep %d rejected rows in %s: %s", len(lines), self.path, err)


def open_private(path: Path, mode: str, errors: str | None = None) -> IO[Any]:
    """Open ``path``, creating it readable by its owner only (it may hold captured
    prompts), and its folder, if missing, for the owner only."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    if "b" in mode:
        return open(path, mode, opener=_owner_only)
    return open(path, mode, encoding="utf-8", errors=errors, opener=_owner_only)


def _owner_only(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class SpillFile:
    """Appends rows to the spill file.

    The file is held open from ``open()`` on and opened again right after each
    rotation: a folder that stops letting files be created (permissions changed, a
    disk remounted read-only for new inodes) still takes rows through the open file,
    which is when the spill is needed most.  An empty file is removed at ``close()``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def open(self) -> None:
        if self._fh is None:
            # A lone surrogate (not valid UTF-8) is written as its JSON escape, which
            # ``decode`` reads back as the same string.
            self._fh = open_private(self.path, "a", errors="backslashreplace")

    def append(self, records: list[RequestRecord]) -> None:
        self.open()
        assert self._fh is not None
        self._fh.write("".join(encode(r) + "\n" for r in records))
        # Flushed to the OS (not fsynced): survives a killed process, costs one syscall.
        self._fh.flush()

    def rotate(self) -> Path | None:
        """Move the file aside for draining; returns the draining path, or None if empty."""
        self._release()
        target = draining_path(self.path)
        if not self.path.exists():
            return None
        self.path.rename(target)
        try:
            self.open()
        except OSError as err:  # ``append`` tries again
            log.warning("ledger: cannot reopen the spill file %s: %s", self.path, err)
        return target

    def close(self) -> None:
        empty = self._fh is not None and os.fstat(self._fh.fileno()).st_size == 0
        self._release()
        if empty:
            with suppress(OSError):  # only tidiness: an empty file reads as no rows
                self.path.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
