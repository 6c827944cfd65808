"""The export cursor file: read, refused, noted as pending, committed in one step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from waystone_cli.core.errors import UsageError
from waystone_cli.export_cursor import Cursor, held_cursor, read_cursor


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of the test's own (the shared home lives in pytest's ``tmp_path``)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def test_no_file_is_a_new_cursor(folder: Path) -> None:
    assert read_cursor(folder / "c.json") == Cursor(folder / "c.json", None, None)


def test_a_committed_cursor_reads_back_its_ledger_and_seq(folder: Path) -> None:
    path = folder / "c.json"
    read_cursor(path).commit(ledger_id="ledger-a", seq=41)
    assert read_cursor(path) == Cursor(path, "ledger-a", 41)
    assert [p.name for p in folder.iterdir()] == ["c.json"]  # no temporary file left


@pytest.mark.parametrize("text", ["", "{", "[]", '{"seq": 3}', '{"ledger_id": 1, "seq": 3}'])
def test_a_file_that_is_no_cursor_is_refused(folder: Path, text: str) -> None:
    path = folder / "c.json"
    path.write_text(text)
    with pytest.raises(UsageError, match="is not an export cursor"):
        read_cursor(path)


def test_a_cursor_of_another_ledger_is_refused(folder: Path) -> None:
    cursor = Cursor(folder / "c.json", "ledger-a", 5)
    cursor.check_ledger("ledger-a")
    Cursor(folder / "c.json", None, None).check_ledger("ledger-b")  # new: any ledger
    with pytest.raises(UsageError, match=r"belongs to another ledger \(ledger-a; this one is"):
        cursor.check_ledger("ledger-b")


def test_a_pending_run_counts_only_when_its_very_output_is_in_place(folder: Path) -> None:
    path, out, written = folder / "c.json", folder / "out.jsonl", folder / "staged"
    written.write_text('{"id": "req_1"}\n')
    Cursor(path, "ledger-a", 3).mark_pending(ledger_id="ledger-a", seq=9, out=out, written=written)
    assert json.loads(path.read_text())["seq"] == 3
    assert read_cursor(path).seq == 3  # the output never landed: the run did not happen
    out.write_text('{"id": "req_0"}\n')
    assert read_cursor(path).seq == 3  # another file there: not this run's output
    written.rename(out)
    assert read_cursor(path) == Cursor(path, "ledger-a", 9)  # it landed: exported


def test_a_cursor_in_use_by_another_export_is_refused(folder: Path) -> None:
    path = folder / "c.json"
    with held_cursor(path) as mine:
        assert mine == Cursor(path, None, None)
        with (
            pytest.raises(UsageError, match="another export is using the cursor"),
            held_cursor(path),
        ):
            pass
    with held_cursor(path) as again:  # released when the run ends
        assert again == Cursor(path, None, None)
    with held_cursor(None) as none:
        assert none is None
