"""Sending spans: finished traces wait in a bounded queue; a thread encodes them
(``daemon/telemetry/otlp.py``) and posts them in batches.

- ``SpanBatcher`` keeps the finished traces in a deque (the event loop only appends);
  its thread encodes and posts them every ``delay_s`` seconds, or as soon as a batch is
  full, through the SDK exporter's own HTTP client (retries with backoff, compression,
  TLS, headers: ``send_with``).  A post carries at most ``max_bytes``.
- Like the SDK's batch processor it drops spans, with a warning, rather than grow
  without bound when the collector cannot keep up; a stop gives up at the first failed
  post.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from daemon.telemetry.otlp import SpanEncoder

log = logging.getLogger("waystone.tracing")


def send_with(exporter: Any) -> Callable[[bytes], bool] | None:
    """The SDK OTLP/HTTP exporter's way to post an encoded export request (its HTTP
    client, since SDK 1.45), or None when this SDK does not have it."""
    export = getattr(getattr(exporter, "_client", None), "export", None)
    if not callable(export):
        return None

    def send(data: bytes) -> bool:
        return bool(export(data).success)  # the client logs what failed

    return send


class Traced(Protocol):
    """What the batcher queues: something that encodes to one or more framed spans."""

    def encode(self, encoder: SpanEncoder) -> bytes: ...


class SpanBatcher:
    """Finished traces, queued by the event loop, encoded and posted in batches by a
    thread (encoding a thousand in one loop costs less than one at a time in between
    the event loop's other work)."""

    def __init__(
        self,
        encoder: SpanEncoder,
        send: Callable[[bytes], bool],
        *,
        max_queue: int = 4096,
        max_batch: int = 1024,
        max_bytes: int = 4 << 20,
        delay_s: float = 5.0,
    ) -> None:
        self.encoder = encoder
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.max_bytes = max_bytes  # collectors refuse big posts (the OTel Collector: 20 MiB)
        self.delay_s = delay_s
        self.dropped = 0  # traces, since start
        self._reported = 0  # of those, the ones a warning has counted
        self._last_ok = True
        self._send = send
        self._queue: deque[Traced] = deque()
        self._wake = threading.Event()
        self._sending = threading.Lock()  # one export at a time: the thread's or a flush
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="waystone-otlp", daemon=True)
        self._thread.start()

    def add(self, traced: Traced) -> None:
        """Queue a finished trace (the event loop's side: a deque append, thread-safe)."""
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopped:
            self.dropped += 1  # the thread warns, once per round
            return
        queue.append(traced)
        if len(queue) >= self.max_batch and not self._wake.is_set():
            self._wake.set()

    def flush(self) -> bool:
        """Send every trace queued so far (not those queued meanwhile: under load that
        would be a stream of small posts); blocks while it posts.  False when a post
        failed: the rest stays queued (the exporter has retried that one already)."""
        return self._send_batches(len(self._queue))

    def shutdown(self) -> None:
        """Stop the thread and send what is left, giving up at the first failed post (a
        collector that is down would otherwise hold the shutdown one timeout per batch)."""
        self._stopped = True
        self._wake.set()
        self._thread.join()
        if not (self._last_ok and self.flush()) and self._queue:
            log.warning("dropping %d unsent traces: the collector did not answer", len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()

    def _run(self) -> None:
        while not self._stopped:
            full = self._wake.wait(self.delay_s)
            self._wake.clear()
            queued = len(self._queue)
            try:  # a full batch wakes the thread early: send only whole batches then
                self._send_batches(queued - queued % self.max_batch if full else queued)
            except Exception:  # the thread must live on: the next batch may go through
                log.exception("sending spans failed")
            if self.dropped > self._reported:
                log.warning(
                    "the span queue was full (%d traces): %d dropped",
                    self.max_queue,
                    self.dropped - self._reported,
                )
                self._reported = self.dropped

    def _send_batches(self, count: int) -> bool:
        queue = self._queue
        with self._sending:
            while count > 0 and queue:
                size = min(count, len(queue), self.max_batch)
                count -= size
                self._last_ok = self._send_batch([queue.popleft() for _ in range(size)])
                if not self._last_ok:
                    return False  # that batch is lost, as with the SDK's batch processor
        return True

    def _send_batch(self, batch: list[Traced]) -> bool:
        """Encode and post ``batch``, in several posts if it passes ``max_bytes``."""
        spans: list[bytes] = []
        size = 0
        for traced in batch:
            try:
                encoded = traced.encode(self.encoder)
            except Exception:  # one bad span must not cost the batch
                log.exception("encoding a span failed")
                continue
            spans.append(encoded)
            size += len(encoded)
            if size >= self.max_bytes:
                if not self._send(self.encoder.request(spans)):
                    return False
                spans, size = [], 0
        return not spans or self._send(self.encoder.request(spans))
