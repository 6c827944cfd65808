import asyncio
import os

import pytest

from daemon import server


async def test_a_worker_stops_once_its_parent_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    parents = iter([100, 100, 100, 1])  # re-parented to init on the fourth look
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    stop = asyncio.Event()
    await asyncio.wait_for(server._stop_when_orphaned(stop, every_s=0.01), 5)
    assert stop.is_set()
