"""``waystone usage export``: ledger rows to csv, parquet, json or CloudEvents, with a
progress bar.

The rows are written by whichever process holds the ledger (``ledger.export``), in
``rowid`` ranges of ``PART_ROWS`` so the bar can count rows and show a percentage; the
parts are then joined here (csv and json by appending, parquet through DuckDB).
``--cursor FILE`` exports only the rows after the last one exported
(``waystone_cli.export_cursor``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from waystone_cli.commands.usage import SINCE_HELP, UNTIL_HELP
from waystone_cli.context import AppContext, app_context
from waystone_cli.core.errors import UsageError

if TYPE_CHECKING:
    from rich.progress import Progress

    from waystone_cli.export_cursor import Cursor

# Rows per part: big enough that a part's COPY dwarfs its round trip to the daemon.
PART_ROWS = 100_000


class Format(StrEnum):
    csv = "csv"
    parquet = "parquet"
    json = "json"
    cloudevents = "cloudevents"


def export(
    ctx: typer.Context,
    format: Format = typer.Option(
        ...,
        "--format",
        help="csv, parquet, json (one object per line) or cloudevents (CloudEvents 1.0, one"
        " event per line).",
    ),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP + " Default: every row."),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    user: str | None = typer.Option(None, "--user", help="Only this user's requests."),
    group: str | None = typer.Option(None, "--group", help="Only requests made in this group."),
    out: Path | None = typer.Option(
        None, "--out", help="Write here (default: stdout, csv and json only)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite the --out file if it exists."),
    cursor: Path | None = typer.Option(
        None,
        "--cursor",
        help="Export only the rows after the last one this cursor file saw, then move it on"
        " (made on the first run).",
    ),
) -> None:
    """Export ledger rows (all, or one user's or group's) through DuckDB's own writers."""
    from waystone_cli import render
    from waystone_cli.commands.usage import _now, iso_time, require_known
    from waystone_cli.export_cursor import held_cursor
    from waystone_cli.ledger.export import refuse_existing

    now = _now()
    if out is None and format is Format.parquet:
        raise UsageError("parquet goes to a file: give --out FILE")
    require_known(ctx, user=user, group=group)
    if out is not None:
        refuse_existing(out.expanduser().resolve(), overwrite=force)
    selection: dict[str, Any] = {
        "since": iso_time(since, now),
        "until": iso_time(until, now),
        "user": user,
        "group": group,
    }
    state = app_context(ctx)
    with held_cursor(cursor) as held:
        plan, mark = _plan(state, selection, held)
        if format is Format.cloudevents:
            selection["source"] = state.load_for_reading().cluster.instance or "waystone"
        rows = _write(state, format.value, out, plan, selection, mark, overwrite=force)
    if rows == 0 and state.query("usage_status")["requests"] == 0:
        render.print_note("The ledger is empty: no request recorded yet.")
    elif out is not None:
        render.print_note(f"Exported {rows:,} rows to {out}.")


def _plan(
    state: AppContext, selection: dict[str, Any], mark: Cursor | None
) -> tuple[dict[str, Any], Cursor | None]:
    """The export's plan; with a cursor, of the rows after it (``selection`` then takes
    their ``seq`` range), once the cursor is known to belong to this ledger.  A ledger
    not created yet has no rows and no id: its cursor is left as it is."""
    after = mark.seq if mark is not None else None
    plan: dict[str, Any] = state.query(
        "usage_export_plan", **selection, after_seq=after, cursor=mark is not None
    )
    if mark is None or plan["ledger_id"] is None:
        return plan, None
    mark.check_ledger(plan["ledger_id"])
    selection.update(after_seq=after, upto_seq=plan["upto_seq"])
    return plan, mark


def _write(
    state: AppContext,
    format: str,
    out: Path | None,
    plan: dict[str, Any],
    selection: dict[str, Any],
    mark: Cursor | None,
    *,
    overwrite: bool,
) -> int:
    """Write the export to ``out`` (or stdout), then move the cursor on."""
    with _target(out) as path:
        if mark is not None and out is not None:
            rows = _export_marked(state, format, path, plan, selection, mark, overwrite=overwrite)
        else:
            rows = _export(state, format, path, plan, selection, overwrite=overwrite)
        if out is None:
            with path.open("rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.flush()
    if mark is not None:
        mark.commit(ledger_id=plan["ledger_id"], seq=plan["upto_seq"])
    return rows


def _export(
    state: AppContext,
    format: str,
    path: Path,
    plan: dict[str, Any],
    selection: dict[str, Any],
    *,
    overwrite: bool,
) -> int:
    """Export the planned rows to ``path`` in parts, advancing a bar by their rows."""
    ranges = _ranges(plan["first_rowid"], plan["last_rowid"])
    with _progress() as progress, tempfile.TemporaryDirectory(prefix="waystone-parts-") as tmp:
        task = progress.add_task(f"exporting {format}", total=plan["rows"] or None)
        if len(ranges) <= 1:
            result = state.query(
                "usage_export", format=format, out=str(path), overwrite=overwrite, **selection
            )
            progress.update(task, completed=result["rows"])
            return int(result["rows"])
        parts, rows = [], 0
        for i, rowids in enumerate(ranges):
            part = Path(tmp) / f"part-{i:05d}"
            result = state.query(
                "usage_export", format=format, out=str(part), rowids=list(rowids),
                header=i == 0, **selection,
            )  # fmt: skip
            parts.append(part)
            rows += result["rows"]
            progress.update(task, completed=rows, refresh=True)
        from waystone_cli.ledger.export import staged

        with staged(path, overwrite=overwrite) as joined:
            _join(format, parts, joined)
        return rows


def _export_marked(
    state: AppContext,
    format: str,
    target: Path,
    plan: dict[str, Any],
    selection: dict[str, Any],
    mark: Cursor,
    *,
    overwrite: bool,
) -> int:
    """Export to a private file, note the run in the cursor, then move the file onto
    ``target``: a run stopped at any point is resumed without a row lost or repeated."""
    from waystone_cli.ledger.export import staged

    with staged(target, overwrite=overwrite) as written:
        rows = _export(state, format, written, plan, selection, overwrite=False)
        mark.mark_pending(
            ledger_id=plan["ledger_id"], seq=plan["upto_seq"], out=target, written=written
        )
    return rows


def _ranges(first: int | None, last: int | None) -> list[tuple[int, int]]:
    """``[lo, hi)`` rowid ranges of ``PART_ROWS`` covering ``first`` to ``last``."""
    if first is None or last is None:
        return []
    return [(lo, min(lo + PART_ROWS, last + 1)) for lo in range(first, last + 1, PART_ROWS)]


def _join(format: str, parts: list[Path], path: Path) -> None:
    if format == "parquet":
        import duckdb

        files = [str(p) for p in parts]
        with duckdb.connect() as con:
            con.execute("SET preserve_insertion_order = true")
            con.execute(
                "COPY (SELECT * FROM read_parquet(?)) TO ? (FORMAT parquet)", [files, str(path)]
            )
        return
    with path.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out)


@contextmanager
def _progress() -> Iterator[Progress]:
    """A bar on stderr with the rows written, their share and the time taken."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from waystone_cli import render

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=render.err_console(), transient=True) as progress:
        yield progress


@contextmanager
def _target(out: Path | None) -> Iterator[Path]:
    """The file the export is written to: ``--out``, or a private temporary file."""
    if out is not None:
        yield out.expanduser().resolve()
        return
    # The writer may be the daemon, so stdout cannot be handed to it: go through a file.
    with tempfile.TemporaryDirectory(prefix="waystone-export-") as folder:
        os.chmod(folder, 0o700)
        yield Path(folder) / "export"
