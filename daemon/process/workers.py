"""``waystone serve --workers N``: one parent that starts, watches and stops N workers.

Each worker is a whole ``waystone serve`` process of its own (its own event loop,
config watcher, ledger writer and counters client), listening on the same port with
``SO_REUSEPORT``: the kernel spreads new connections over the workers' sockets.  The
parent serves nothing itself.  It

- starts the workers, each with its own instance name in its environment
  (``core.workers``);
- restarts a worker that exits while the parent is not stopping, after a back-off
  (``Backoff``: doubling from half a second to thirty, back to the start once a worker
  stayed up a minute), so a worker that cannot start does not spin the CPU;
- forwards SIGHUP to every worker (each reloads its config as one daemon does), and
  on SIGTERM or SIGINT forwards SIGTERM to every worker (each drains its requests and
  flushes its ledger), waits for them up to ``stop_timeout_s``, kills those still
  running, and exits 0 when every worker stopped cleanly (exit 0, or ended by the
  SIGTERM itself while still starting).

The worker command is given to the ``Supervisor`` (``WorkerSpec``), which keeps this
module free of the CLI and lets its tests run small stand-in workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daemon.telemetry.logs import JsonFormatter, TextFormatter
from waystone_cli.core.errors import WaystoneError

log = logging.getLogger("waystone.workers")


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    command: Sequence[str]
    env: Mapping[str, str]


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a worker that exited."""

    first_s: float = 0.5
    max_s: float = 30.0
    # A worker that ran this long before it exited is restarted after ``first_s``.
    stable_s: float = 60.0

    def after(self, previous_s: float, ran_s: float) -> float:
        if previous_s == 0.0 or ran_s >= self.stable_s:
            return self.first_s
        return min(previous_s * 2, self.max_s)


@dataclass
class _Slot:
    spec: WorkerSpec
    proc: asyncio.subprocess.Process | None = None
    delay_s: float = 0.0
    starts: int = 0


@dataclass
class Supervisor:
    specs: Sequence[WorkerSpec]
    backoff: Backoff = field(default_factory=Backoff)
    stop_timeout_s: float = 30.0
    _slots: list[_Slot] = field(init=False)
    _stopping: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._slots = [_Slot(spec) for spec in self.specs]

    @property
    def pids(self) -> list[int | None]:
        """Each worker's process id now (None while it waits to be restarted)."""
        return [_live(slot.proc) for slot in self._slots]

    @property
    def starts(self) -> list[int]:
        """How many times each worker was started."""
        return [slot.starts for slot in self._slots]

    async def run(self, *, signals: bool = True) -> int:
        """Run the workers until ``stop()`` (or SIGTERM/SIGINT); the exit code."""
        loop = asyncio.get_running_loop()
        if signals:
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)
        keepers = [
            asyncio.create_task(self._keep(slot), name=f"waystone-worker-{slot.spec.name}")
            for slot in self._slots
        ]
        try:
            await self._stopping.wait()
            return await self._stop_all(keepers)
        finally:
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    def stop(self) -> None:
        self._stopping.set()

    def forward(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every running worker."""
        for slot in self._slots:
            _signal(slot.proc, sig)

    async def _keep(self, slot: _Slot) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            code = await self._start_and_wait(slot)
            if self._stopping.is_set():
                return
            slot.delay_s = self.backoff.after(slot.delay_s, time.monotonic() - started)
            log.warning(
                "worker %s exited with %s; restarting it in %.1f s",
                slot.spec.name,
                code,
                slot.delay_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), slot.delay_s)

    async def _start_and_wait(self, slot: _Slot) -> int | str:
        """Run the worker once; its exit code, or why it could not start."""
        try:
            slot.proc = await asyncio.create_subprocess_exec(
                *slot.spec.command, env=dict(slot.spec.env)
            )
        except OSError as err:  # the command itself is missing or not executable
            slot.proc = None
            return f"no start ({err})"
        slot.starts += 1
        log.info("worker %s started (PID %d)", slot.spec.name, slot.proc.pid)
        if self._stopping.is_set():  # stop() came while it was being spawned
            _signal(slot.proc, signal.SIGTERM)
        return await slot.proc.wait()

    async def _stop_all(self, keepers: list[asyncio.Task[None]]) -> int:
        self.forward(signal.SIGTERM)
        _, late = await asyncio.wait(keepers, timeout=self.stop_timeout_s)
        if late:
            log.error("workers still running after %.0f s: killed", self.stop_timeout_s)
            self.forward(signal.SIGKILL)
            await asyncio.wait(late)
        # None: the last attempt could not start the worker.
        codes = [None if slot.proc is None else slot.proc.returncode for slot in self._slots]
        # Ended by SIGTERM itself: a worker still starting, with nothing to drain yet.
        clean = not late and all(code in (0, -signal.SIGTERM) for code in codes)
        log.info("workers stopped: exit codes %s", codes)
        return 0 if clean else 1


def _live(proc: asyncio.subprocess.Process | None) -> int | None:
    return proc.pid if proc is not None and proc.returncode is None else None


def _signal(proc: asyncio.subprocess.Process | None, sig: signal.Signals) -> None:
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def check_port_free(host: str, port: int) -> None:
    """Refuse at once a port another program listens on, rather than restarting workers
    that cannot bind it.  The probe does not set ``SO_REUSEPORT``: another group of
    workers (another home's ``serve --workers``) would otherwise share the port with
    these, and each would answer half of the other's clients."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the workers bind (aiohttp sets SO_REUSEADDR): a port whose last connections
        # wait in TIME_WAIT is free to them, and so to the probe.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise WaystoneError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def supervise(
    specs: Sequence[WorkerSpec], log_format: str = "text", stop_timeout_s: float = 30.0
) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the process's exit code."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return asyncio.run(Supervisor(specs, stop_timeout_s=stop_timeout_s).run())
