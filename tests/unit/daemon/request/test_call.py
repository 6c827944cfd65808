"""A Call's record starts with the request's id, route and start time."""

from __future__ import annotations

from datetime import UTC
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from daemon.request.call import Call
from daemon.state import CONFIG, LEDGER, OBSERVER, STORE


def test_a_call_stamps_its_record_with_the_naive_utc_time_of_its_start() -> None:
    app = web.Application()
    app[CONFIG] = SimpleNamespace(current=object())  # type: ignore[assignment]
    app[OBSERVER] = SimpleNamespace(start_trace=lambda record, headers: None)  # type: ignore[assignment]
    request = make_mocked_request("POST", "/v1/chat/completions", app=app)
    first, second = Call(request, "chat/completions"), Call(request, "embeddings")
    for call in (first, second):
        assert call.now.tzinfo is UTC
        assert call.record.ts.tzinfo is None
        assert call.record.ts == call.now.replace(tzinfo=None)
        assert call.record.id.startswith("req_") and len(call.record.id) == 28
    assert (first.record.route, second.record.route) == ("chat/completions", "embeddings")
    assert first.record.id != second.record.id


def test_request_ids_are_unique_random_hex_across_reads_of_the_pool() -> None:
    from daemon.request.call import IDS_PER_READ, new_request_id

    ids = [new_request_id() for _ in range(3 * IDS_PER_READ + 7)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("req_") and len(i) == 28 for i in ids)
    assert all(set(i[4:]) <= set("0123456789abcdef") for i in ids)


def test_finish_never_raises_and_queues_the_row_whatever_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("int too big to convert")

    submitted: list[object] = []
    app = web.Application()
    app[CONFIG] = SimpleNamespace(current=object())  # type: ignore[assignment]
    app[OBSERVER] = SimpleNamespace(  # type: ignore[assignment]
        start_trace=lambda record, headers: None,
        request_done=broken,
        refused_rows=SimpleNamespace(admit=broken),
    )
    app[STORE] = SimpleNamespace(settle=broken)  # type: ignore[assignment]
    app[LEDGER] = SimpleNamespace(submit=submitted.append)  # type: ignore[assignment]
    call = Call(make_mocked_request("POST", "/v1/chat/completions", app=app), "chat/completions")
    call.reservation = object()
    call.finish()
    call.finish()  # a second finish does nothing
    assert submitted == [call.record]
    assert call.record.latency_ms is not None
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in failures] == [
        f"request {call.record.id}: finishing it failed in _settle",
        f"request {call.record.id}: finishing it failed in _admit",
        f"request {call.record.id}: finishing it failed in _report",
    ]
    assert all(r.exc_info is not None for r in failures)
