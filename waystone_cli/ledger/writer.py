"""The daemon's ledger writer: a bounded queue drained in batches by one background task.

The request path only calls ``submit``, which never blocks and never drops a row: the
row goes into a bounded ``asyncio.Queue`` or, when that is full, onto the spill file
(one JSON line, flushed to the OS).  One task waits for the first row, lingers up to
``flush_interval_ms`` (or until ``batch_size`` rows wait), then inserts what is there
in batches on a single worker thread, so DuckDB calls are serialized and the event
loop never waits on the database.  Each batch is one transaction: the ``requests``
rows, the entity and link upserts, captured content and dataset items; every five
seconds one batch also folds the rows since the last fold into the daily rollup
(``ledger.rollup``), and when traffic stops the task folds on its own.  Rows go in
through DuckDB's appender (or one list parameter per column), far faster than
``executemany``.

The writer remembers the users, groups and links it knows are in the ledger
(``KnownEntities``, loaded at ``start()``), so a batch of known ones writes no entity
statement; their ``last_seen`` moves are written at most once a minute, by a batch or,
when traffic stops, by the task on its own, and all of them at ``close()``.

A row the ledger cannot store (a value beyond its column, a spill line that does not
convert) is set aside with its reason in the ``.rejected`` file beside the spill, and
every other row of its batch is written (``ledger.rows``).  A batch that fails because
the database cannot take anything is logged and its rows are spilled; the spill is
drained after the queue, with exponential back-off while the database keeps failing.
Rows from a spill left behind by a crash are loaded at ``start()``, skipping ids
already in the ledger (the crash may have come between a commit and the file's
removal).

``flush()`` is exact because both paths are first-in first-out: the queue is drained
in order, and the spill file is read in the order it was written.  Counting rows in and
rows done on each path tells when everything submitted before the call is committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from waystone_cli.core.errors import WaystoneError
from waystone_cli.core.records import RequestRecord
from waystone_cli.ledger import spill
from waystone_cli.ledger.batch import drop_known, fold_now, insert_batch, write_entity_times
from waystone_cli.ledger.connection import lower_priority
from waystone_cli.ledger.dialect import Connection, database_errors, dialect_of
from waystone_cli.ledger.entities import KnownEntities
from waystone_cli.ledger.rollup import FOLD_EVERY_S, Folding
from waystone_cli.ledger.rows import insert_isolating

T = TypeVar("T")
log = logging.getLogger("waystone.ledger")

_MAX_BACKOFF_S = 30.0


class LedgerWriter:
    """Batched, non-blocking writes to the ledger; see the module docstring."""

    def __init__(
        self,
        con: Connection,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1_000,
        flush_interval_ms: int = 500,
        spill_path: Path | None = None,
        entity_refresh_s: float = 60.0,
        fold_every_s: float = FOLD_EVERY_S,
        instance: str | None = None,
    ) -> None:
        self._con = con
        self._instance = instance
        self._batch_size = batch_size
        self._interval = flush_interval_ms / 1000
        self._queue: asyncio.Queue[RequestRecord] = asyncio.Queue(maxsize=queue_size)
        self._spill = spill.SpillFile(spill_path or _default_spill_path(con))
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._progress: asyncio.Future[None] | None = None
        self._urgent = 0
        self._closing = False
        # First-in first-out counters per path (see the module docstring).
        self._queued = 0
        self._queue_done = 0
        self._spilled = 0
        self._spill_done = 0
        self._inflight = 0
        self._draining: Path | None = None
        self._drain_offset = 0
        self._dedupe = False
        self._backoff = 0.0
        self._failed_at = 0.0
        self._retry_at = 0.0
        # Rows the spill file could not take (disk full): the last place to keep them.
        self._held: list[RequestRecord] = []
        self._known = KnownEntities(refresh_s=entity_refresh_s)
        # Several Postgres writers share one rollup: each adds its batches at once.
        self._folding = None if dialect_of(con).postgres else Folding(fold_every_s)
        self.last_flush_ms: float | None = None
        self._rejected = spill.RejectedFile(spill.rejected_path(self._spill.path))

    @property
    def spill_path(self) -> Path:
        return self._spill.path

    @property
    def rejected_path(self) -> Path:
        """Where rows the ledger cannot store are kept, with the reason."""
        return self._rejected.path

    @property
    def rejected(self) -> int:
        """Rows set aside in ``rejected_path`` since the writer was made."""
        return self._rejected.count

    @property
    def depth(self) -> int:
        """Rows submitted and not yet committed (queue, spill and the batch in flight)."""
        pending_spill = self._spilled - self._spill_done
        return self._queue.qsize() + pending_spill + self._inflight + len(self._held)

    @property
    def healthy(self) -> bool:
        """False while batches are failing and being retried (for /readyz)."""
        return self._backoff == 0.0

    async def start(self) -> None:
        """Recover a spill left by a crash, then start the writer task."""
        if self._task is not None:
            raise WaystoneError("the ledger writer is already started")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="waystone-ledger")
        await self._in_thread(lower_priority)  # DuckDB work below the event loop's
        try:
            await self._in_thread(self._known.load, self._con)
        except database_errors() as err:  # only a cost: unknown entities are MERGEd
            log.warning("ledger: cannot load the known entities: %s", err)
        if self._folding is not None:
            await self._in_thread(self._folding.load, self._con)
        self._recover()
        try:
            self._spill.open()  # held open: see ``spill.SpillFile``
        except OSError as err:
            log.warning("ledger: cannot open the spill file %s: %s", self.spill_path, err)
        if self._spilled:
            await self._drain_spill()
        self._task = asyncio.create_task(self._run(), name="waystone-ledger-writer")

    def submit(self, record: RequestRecord) -> None:
        """Queue one row; spill it to disk if the queue is full.  Never blocks or drops."""
        if not self._closing:
            try:
                self._queue.put_nowait(record)
            except asyncio.QueueFull:
                pass
            else:
                self._queued += 1
                size = self._queue.qsize()
                if size == 1 or size >= self._batch_size:
                    self._wake.set()
                return
        self._spill_rows([record])
        self._wake.set()

    async def flush(self) -> None:
        """Return once every row submitted before the call is committed."""
        queued = self._queued
        self._urgent += 1
        try:
            await self._wait_until(lambda: self._queue_done >= queued)
            # Rows spilled so far include any that a failed batch moved there.
            spilled = self._spilled
            await self._wait_until(lambda: self._spill_done >= spilled and not self._held)
        finally:
            self._urgent -= 1

    async def close(self) -> None:
        """Write everything (queue and spill) and stop the task.

        If the database keeps failing, the rows left are on the spill file, which the
        next ``start()`` loads.  The connection stays open: its owner closes it.
        """
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        else:  # never started: keep the queued rows for the next start
            rows = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
            self._spill_rows(rows)
        if self._held:
            log.critical("ledger: %d rows could not be written anywhere", len(self._held))
        self._spill.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def run_in_db(self, fn: Callable[[Connection], T]) -> Awaitable[T]:
        """Run ``fn(cursor)`` on the writer's thread, serialized with the batch inserts."""
        if self._executor is None:
            raise WaystoneError("the ledger writer is not running")

        def call() -> T:
            cursor = self._con.cursor()
            try:
                return fn(cursor)
            finally:
                cursor.close()
                # fn may have written metadata (``/api/identify`` does): merge patches again.
                self._known.forget_metadata()

        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- the task ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wait_for_work()
            await self._drain_queue()
            await self._drain_spill()
            if self._closing and self._queue.empty() and self._spill_settled():
                await self._write_entity_times(force=True)
                await self._fold(force=True)
                held, self._held = self._held, []
                self._spill_rows(held)  # held again if the spill still takes nothing
                return
            if self._known.due_in() == 0:
                await self._write_entity_times()
            if self._folding is not None and self._folding.due_in() == 0:
                await self._fold()

    def _spill_settled(self) -> bool:
        # While closing, one failed attempt is enough: the rows wait on disk.
        return self._spilled == self._spill_done or self._backoff > 0

    async def _wait_for_work(self) -> None:
        if self._closing:
            return
        if self._queue.empty():
            fold_in = None if self._folding is None else self._folding.due_in()
            await self._sleep(_earliest(self._spill_wait(), self._known.due_in(), fold_in))
        # Linger so a trickle of rows makes one batch rather than many tiny transactions.
        waiting = self._queue.qsize()
        if 0 < waiting < self._batch_size and not (self._urgent or self._closing):
            await self._sleep(self._interval)

    def _spill_wait(self) -> float | None:
        """Seconds until the spill should be drained; None when it is empty."""
        if self._spilled == self._spill_done and not self._held:
            return None
        now = time.monotonic()
        retry_at = self._retry_at
        if self._urgent:
            retry_at = min(retry_at, self._failed_at + self._interval)
        return max(0.0, retry_at - now)

    async def _sleep(self, timeout: float | None) -> None:
        if timeout == 0:
            return
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _drain_queue(self) -> None:
        # Only the rows there now, so a steady stream cannot starve the spill.
        remaining = self._queue.qsize()
        while remaining > 0:
            batch = [self._queue.get_nowait() for _ in range(min(remaining, self._batch_size))]
            remaining -= len(batch)
            self._inflight = len(batch)
            if not await self._write(batch, dedupe=False):
                self._spill_rows(batch)
            self._inflight = 0
            self._queue_done += len(batch)
            self._notify()
        if self._held:
            # Held until written: ``flush()`` and ``depth`` count them meanwhile.
            held = list(self._held)
            if await self._write(held, dedupe=True):
                del self._held[: len(held)]
            else:
                self._failed()
            self._notify()

    def _spill_rows(self, records: list[RequestRecord]) -> None:
        if not records:
            return
        try:
            self._spill.append(records)
        except OSError as err:
            log.error("ledger: cannot write the spill file %s: %s", self.spill_path, err)
            self._held.extend(records)
            # Some lines may have reached the file; the dedupe keeps them from counting twice.
            self._dedupe = True
            return
        self._spilled += len(records)

    async def _drain_spill(self) -> None:
        wait = self._spill_wait()
        if wait is None or (wait > 0 and not self._closing):
            return
        while self._spill_done < self._spilled:
            if self._draining is None:
                self._draining = self._spill.rotate()
                self._drain_offset = 0
                if self._draining is None:
                    log.error("ledger: the spill file %s has vanished", self.spill_path)
                    self._spill_done = self._spilled
                    break
            chunk = await self._in_thread(
                spill.read_chunk, self._draining, self._drain_offset, self._batch_size
            )
            if chunk.lines == 0:
                self._draining.unlink()
                self._draining = None
                continue
            if not await self._write(
                chunk.records, dedupe=self._dedupe, unreadable=chunk.unreadable
            ):
                self._failed()
                return
            self._drain_offset = chunk.offset
            self._spill_done += chunk.lines
            if chunk.lines < self._batch_size:  # the end of the draining file
                self._draining.unlink()
                self._draining = None
            self._notify()
        if not self._held:
            self._dedupe = False
            self._backoff = 0.0

    async def _write(
        self,
        records: list[RequestRecord],
        *,
        dedupe: bool,
        unreadable: Sequence[spill.Unreadable] = (),
    ) -> bool:
        """Insert the rows, setting aside those the ledger cannot store (``rows``);
        False if the database could not take them, and the rows are to be retried."""
        started = time.perf_counter()
        skip_known = self._drop_known if dedupe else None
        try:
            rejected = await self._in_thread(insert_isolating, self._insert, records, skip_known)
        except Exception:
            # Whatever went wrong (a disk error, a bug), the task must live and keep the rows.
            log.exception("ledger batch of %d rows failed; kept for retry", len(records))
            # Part of the batch may be committed (``insert_isolating``): skip it on retry.
            self._dedupe = True
            return False
        self.last_flush_ms = (time.perf_counter() - started) * 1000
        if records:  # the database took rows: ready, whichever path had failed
            self._backoff = 0.0
        if rejected or unreadable:
            self._rejected.keep(rejected, unreadable)
        return True

    def _insert(self, records: Sequence[RequestRecord]) -> None:
        insert_batch(self._con, records, self._known, self._folding, self._instance)

    def _drop_known(self, records: Sequence[RequestRecord]) -> list[RequestRecord]:
        return drop_known(self._con, records)

    async def _write_entity_times(self, *, force: bool = False) -> None:
        try:
            await self._in_thread(lambda: write_entity_times(self._con, self._known, force=force))
        except Exception:
            # Only last_seen times: tried again a minute later, never in a busy loop.
            log.exception("ledger: writing entity last_seen times failed")
            self._known.postpone()

    async def _fold(self, *, force: bool = False) -> None:
        folding = self._folding
        if folding is None or not folding.due(force=force):
            return
        try:
            await self._in_thread(fold_now, self._con, folding)
        except Exception:
            # The rows are safe and reports add them to the rollup: tried again later.
            log.exception("ledger: folding rows into the daily rollup failed")
            folding.postpone()

    def _failed(self) -> None:
        self._backoff = min(max(self._backoff * 2, 1.0), _MAX_BACKOFF_S)
        self._failed_at = time.monotonic()
        self._retry_at = self._failed_at + self._backoff
        self._notify()

    # -- plumbing ---------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _recover(self) -> None:
        """Count the rows of spill files left by a previous run; they are drained first."""
        draining = spill.draining_path(self.spill_path)
        leftover = spill.count_lines(draining) + spill.count_lines(self.spill_path)
        if leftover:
            log.warning("ledger: recovering %d rows from %s", leftover, self.spill_path)
            self._spilled += leftover
            self._dedupe = True
            self._draining = draining if draining.exists() else None

    def _notify(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)
        self._progress = None

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self._task is None or self._task.done():
                raise WaystoneError("the ledger writer is not running")
            if self._progress is None:
                self._progress = asyncio.get_running_loop().create_future()
            self._wake.set()
            await asyncio.wait({self._progress, self._task}, return_when=asyncio.FIRST_COMPLETED)


def _earliest(*delays: float | None) -> float | None:
    """The shortest of the delays that are set; None (wait for a wake-up) if none is."""
    return min((d for d in delays if d is not None), default=None)


def _default_spill_path(con: Connection) -> Path:
    if dialect_of(con).postgres:
        raise WaystoneError("a Postgres ledger needs an explicit spill_path")
    row = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    if row is None or row[0] is None:
        raise WaystoneError("an in-memory ledger needs an explicit spill_path")
    return Path(row[0] + ".spill.jsonl")
