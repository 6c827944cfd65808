"""The writer's overflow file: ledger rows kept on disk as JSON lines until inserted.

Rows land here when the writer's queue is full or when a batch insert fails.  Each row is
one JSON object per line, flushed to the OS at once so a killed process keeps it.  The
writer renames the file to ``*.draining`` before reading it, so appends never race the
reader; lines are processed in file order, which is what makes ``flush()`` exact.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from waystone_cli.core.records import RequestRecord

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


def read_chunk(path: Path, offset: int, limit: int) -> tuple[list[RequestRecord], int, int]:
    """Up to ``limit`` rows from byte ``offset``: (records, lines read, next offset).

    A line that does not decode (a write cut short by a crash) is moved to the
    ``.rejected`` file beside the spill and logged, rather than blocking the rest.
    """
    records: list[RequestRecord] = []
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
            except (ValueError, TypeError, KeyError) as err:
                _reject(path, raw, err)
        return records, lines, fh.tell()


def _reject(path: Path, raw: bytes, err: Exception) -> None:
    target = rejected_path(path.with_name(path.name.removesuffix(".draining")))
    log.error("ledger spill line is unreadable (%s); kept in %s", err, target)
    with target.open("ab") as out:
        out.write(raw if raw.endswith(b"\n") else raw + b"\n")


class SpillFile:
    """Appends rows to the spill file; opened on first use, closed on rotation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def append(self, records: list[RequestRecord]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write("".join(encode(r) + "\n" for r in records))
        # Flushed to the OS (not fsynced): survives a killed process, costs one syscall.
        self._fh.flush()

    def rotate(self) -> Path | None:
        """Move the file aside for draining; returns the draining path, or None if empty."""
        self.close()
        target = draining_path(self.path)
        if not self.path.exists():
            return None
        self.path.rename(target)
        return target

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
