"""The daemon's JSON log lines: request records printed as built, others wrapped."""

from __future__ import annotations

import json
import logging
import time

from daemon.telemetry.logs import JsonFormatter, TextFormatter, write_direct


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


# --- write_direct: the request line without a LogRecord -----------------------------


def test_a_direct_text_line_is_what_the_formatter_prints() -> None:
    ours = TextFormatter()
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_001.0021):
        record = _record("request_id=req_1 status=200")
        record.name = "waystone.request"
        record.created, record.msecs = created, (created - int(created)) * 1000
        expected = ours.format(record)
        assert ours.line("waystone.request", "INFO", "request_id=req_1 status=200", created) == (
            expected
        )


def _strip_time(text: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in text.splitlines()]


def test_write_direct_prints_what_logger_info_prints(daemon_logger) -> None:  # type: ignore[no-untyped-def]
    logger, handler, out = daemon_logger
    assert write_direct(logger, [(time.time(), "request_id=req_1 status=200")], json_record=False)
    logger.info("request_id=req_1 status=200")
    first, second = _strip_time(out.getvalue())
    assert first == second == "INFO waystone.request request_id=req_1 status=200"
    handler.setFormatter(JsonFormatter())
    out.truncate(0), out.seek(0)
    assert write_direct(logger, [(time.time(), '{"request_id": "req_1"}')], json_record=True)
    logger.info('{"request_id": "req_1"}', extra={"json_record": True})
    assert out.getvalue() == '{"request_id": "req_1"}\n' * 2


def test_write_direct_leaves_anything_else_listening_to_the_logging_module(daemon_logger) -> None:  # type: ignore[no-untyped-def]
    logger, handler, out = daemon_logger

    def refused() -> bool:
        return not write_direct(logger, [(0.0, "line")], json_record=False) and out.getvalue() == ""

    other = logging.Handler()
    logger.addHandler(other)  # e.g. pytest's caplog
    assert refused()
    logger.removeHandler(other)
    parent = logging.Logger("waystone")
    parent.addHandler(other)
    logger.parent = parent  # a handler further up counts too
    assert refused()
    parent.propagate = False
    logger.propagate = False  # ... unless the record stops before it
    assert write_direct(logger, [(0.0, "line")], json_record=False)
    out.truncate(0), out.seek(0)
    logger.parent, logger.propagate = None, True
    logger.addFilter(lambda record: True)
    assert refused()
    logger.filters.clear()
    handler.addFilter(lambda record: True)
    assert refused()
    handler.filters.clear()
    handler.setFormatter(logging.Formatter())
    assert refused()
    handler.setFormatter(JsonFormatter())
    assert refused()  # a text line is not a JSON record
    handler.setFormatter(TextFormatter())
    handler.setLevel(logging.WARNING)
    assert refused()
    handler.setLevel(logging.NOTSET)
    logger.disabled = True
    assert refused()
    logger.disabled = False
    assert write_direct(logger, [(0.0, "line")], json_record=False)


def test_a_batch_of_direct_lines_keeps_each_line_s_own_time(daemon_logger) -> None:  # type: ignore[no-untyped-def]
    logger, handler, out = daemon_logger
    times = (1_700_000_000.25, 1_700_000_000.999, 1_700_000_003.5)
    lines = [(at, f"request_id=req_{i}") for i, at in enumerate(times)]
    assert write_direct(logger, lines, json_record=False)
    formatter = TextFormatter()
    expected = []
    for at, message in lines:
        record = _record(message)
        record.name = "waystone.request"
        record.created, record.msecs = at, (at - int(at)) * 1000
        expected.append(formatter.format(record))
    assert out.getvalue().splitlines() == expected
