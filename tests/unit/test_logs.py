"""The daemon's JSON log lines: request records printed as built, others wrapped."""

from __future__ import annotations

import json
import logging

from daemon.logs import JsonFormatter, TextFormatter


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("waystone.daemon", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_a_request_line_is_printed_as_the_observer_built_it() -> None:
    line = '{"request_id": "req_1", "status": 200}'
    assert JsonFormatter().format(_record(line, json_record=True)) == line


def test_other_records_become_json_objects() -> None:
    out = json.loads(JsonFormatter().format(_record("waystone listening")))
    assert (out["level"], out["logger"], out["message"]) == (
        "info",
        "waystone.daemon",
        "waystone listening",
    )
    assert set(out) == {"time", "level", "logger", "message"}


def test_text_lines_look_as_the_standard_formatter_prints_them() -> None:
    standard = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    ours = TextFormatter()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_001.0021):
        record = _record("request_id=req_1 status=200")
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == standard.format(record)
