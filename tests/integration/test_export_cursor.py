"""``waystone usage export --cursor`` and ``--format cloudevents`` against a running daemon.

The CLI runs in a thread (it asks the daemon over its admin socket, which this event loop
serves); its rows come from real traffic, numbered by the daemon's writer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Gateway
from tests.unit.ledger.test_reports import insert
from waystone_cli.context import AppContext
from waystone_cli.core.errors import WaystoneError
from waystone_cli.export_cursor import Cursor
from waystone_cli.ledger.connection import open_readwrite
from waystone_cli.main import main


async def _traffic(gateway: Gateway, n: int, user: str = "alice") -> None:
    async with gateway.client() as client:
        for _ in range(n):
            await client.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": "hi"}],
                metadata={"waystone": json.dumps({"user": user})},
            )


async def _ids(gateway: Gateway) -> list[str]:
    """Every request id in the ledger, in the order the writer numbered them (flushed)."""
    return [r["id"] for r in await gateway.rows("SELECT id FROM requests ORDER BY seq")]


async def _export(*args: str) -> int:
    return await asyncio.to_thread(main, ["usage", "export", "--format", "cloudevents", *args])


def _exported(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


async def test_a_cursor_export_twice_with_traffic_between_writes_each_row_once(
    gateway: Gateway, tmp_path: Path
) -> None:
    cursor = tmp_path / "cursor.json"
    await _traffic(gateway, 3)
    first = await _ids(gateway)
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "1.jsonl")) == 0
    assert _exported(tmp_path / "1.jsonl") == first
    await _traffic(gateway, 2)
    second = (await _ids(gateway))[3:]
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "2.jsonl")) == 0
    assert _exported(tmp_path / "2.jsonl") == second
    # Nothing new: an empty export, and the cursor stays at the last row.
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "3.jsonl")) == 0
    assert _exported(tmp_path / "3.jsonl") == []
    seq = await gateway.rows("SELECT max(seq) AS seq FROM requests")
    assert json.loads(cursor.read_text())["seq"] == seq[0]["seq"]


async def test_an_export_interrupted_halfway_then_rerun_writes_every_row_once(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("waystone_cli.commands.export.PART_ROWS", 2)
    folder = tmp_path / "exports"
    folder.mkdir()
    cursor, out = folder / "cursor.json", folder / "out.jsonl"
    await _traffic(gateway, 5)
    ids = await _ids(gateway)
    real = AppContext.query
    parts = []

    def dies_on_the_second_part(self: AppContext, name: str, **params: Any) -> Any:
        if name == "usage_export":
            parts.append(params["rowids"])
            if len(parts) == 2:
                raise WaystoneError("killed halfway")
        return real(self, name, **params)

    monkeypatch.setattr(AppContext, "query", dies_on_the_second_part)
    assert await _export("--cursor", str(cursor), "--out", str(out)) == 1
    # Half written: no output in place, no cursor moved.
    assert (out.exists(), cursor.exists()) == (False, False)
    # Nor a half-written file: only the cursor's lock, which stays (as the config's).
    assert [p.name for p in folder.iterdir()] == ["cursor.json.lock"]
    monkeypatch.setattr(AppContext, "query", real)
    assert await _export("--cursor", str(cursor), "--out", str(out)) == 0
    assert _exported(out) == ids


async def test_a_run_stopped_after_its_output_landed_is_not_exported_again(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cursor = tmp_path / "cursor.json"
    await _traffic(gateway, 3)
    first = await _ids(gateway)

    real = Cursor.commit

    def killed(self: Cursor, **_: Any) -> None:
        raise WaystoneError("killed before the cursor moved")

    monkeypatch.setattr(Cursor, "commit", killed)
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "1.jsonl")) == 1
    assert _exported(tmp_path / "1.jsonl") == first
    assert json.loads(cursor.read_text())["seq"] is None  # only noted as pending
    monkeypatch.setattr(Cursor, "commit", real)
    await _traffic(gateway, 2)
    second = (await _ids(gateway))[3:]
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "2.jsonl")) == 0
    assert _exported(tmp_path / "2.jsonl") == second


async def test_a_cursor_from_another_ledger_is_refused(
    gateway: Gateway, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cursor = tmp_path / "cursor.json"
    cursor.write_text(json.dumps({"ledger_id": "ledger-0123456789abcdef", "seq": 7}))
    await _traffic(gateway, 1)
    await _ids(gateway)
    assert await _export("--cursor", str(cursor), "--out", str(tmp_path / "x.jsonl")) == 2
    assert "belongs to another ledger (ledger-0123456789abcdef" in capfd.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
    assert json.loads(cursor.read_text()) == {"ledger_id": "ledger-0123456789abcdef", "seq": 7}


async def test_cloudevents_carry_the_request_as_a_metering_event(
    start_gateway: Any, tmp_path: Path
) -> None:
    gateway = await start_gateway('[cluster]\ninstance = "eu-1"\n')
    await _traffic(gateway, 1)
    (row,) = await gateway.rows()
    out = tmp_path / "events.jsonl"
    assert await _export("--out", str(out)) == 0
    (event,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert event == {
        "specversion": "1.0",
        "id": row["id"],
        "source": "eu-1",
        "type": "waystone.request",
        "subject": "alice",
        "time": row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "datacontenttype": "application/json",
        "data": {
            "user": "alice",
            "group": None,
            "provider": "up",
            "model": "gpt-test",
            "requested_model": "up/gpt-test",
            "route": "chat/completions",
            "stream": False,
            "status": 200,
            "outcome": "ok",
            "input_tokens": 12,
            "output_tokens": 5,
            "cached_tokens": 2,
            "reasoning_tokens": 1,
            "cost_usd": 0.000021,
            "priced": True,
            "usage_estimated": False,
            "latency_ms": row["latency_ms"],
            "flagged": False,
        },  # fmt: skip
    }


async def test_a_cursor_export_to_stdout_of_one_user_moves_past_every_row_it_saw(
    gateway: Gateway, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cursor = str(tmp_path / "cursor.json")
    await _traffic(gateway, 2, user="alice")
    await _traffic(gateway, 1, user="bob")
    alice = [
        r["id"]
        for r in await gateway.rows("SELECT id FROM requests WHERE user_id = 'alice' ORDER BY seq")
    ]
    capfd.readouterr()
    assert await _export("--cursor", cursor, "--user", "alice") == 0
    assert [json.loads(line)["id"] for line in capfd.readouterr().out.splitlines()] == alice
    await _traffic(gateway, 1, user="bob")
    await _traffic(gateway, 1, user="alice")
    later = await gateway.rows("SELECT id FROM requests WHERE user_id = 'alice' ORDER BY seq")
    assert await _export("--cursor", cursor, "--user", "alice") == 0
    assert [json.loads(line)["id"] for line in capfd.readouterr().out.splitlines()] == [
        later[-1]["id"]
    ]


def test_an_export_killed_while_writing_then_rerun_writes_every_row_once(
    waystone_home: Path,
) -> None:
    """A real process, SIGKILLed while stdout blocks on a full pipe (no daemon: the CLI
    reads the ledger file); its partial output is dropped, as a failed run's must be."""
    rows = [
        (f"r{n:05d}", f"2026-11-01 {n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}", f"u{n % 7}",
         None, "openai", "gpt-4o", 100, 20, "0.0001", "ok")
        for n in range(3000)
    ]  # fmt: skip
    con = open_readwrite(waystone_home / "ledger.duckdb")
    insert(con, rows)
    con.execute("UPDATE requests SET seq = CAST(substr(id, 2) AS BIGINT) + 1")
    con.close()
    cursor = waystone_home / "cursor.json"
    command = [sys.executable, "-m", "waystone_cli.main", "usage", "export", "--format", "json"]
    command += ["--cursor", str(cursor)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    partial = proc.stdout.read(4096)  # the pipe holds 64 KiB: the rest waits on us
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert partial.startswith(b'{"id":"r00000"')
    assert not cursor.exists()
    rerun = subprocess.run(command, capture_output=True, check=True)
    ids = [json.loads(line)["id"] for line in rerun.stdout.splitlines()]
    assert ids == [r[0] for r in rows]
    again = subprocess.run(command, capture_output=True, check=True)
    assert again.stdout == b""
