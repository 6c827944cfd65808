"""Real Redis and Postgres servers for the tests, from Debian's packages.

Each server runs in a temporary directory on a free loopback port and is stopped at the
end of the session.  Tests may stop, kill and restart one (the fault tests do).

A missing binary skips the tests that need the server, with the reason; under CI
(``CI=true``) it fails them instead, so a CI machine that lost a package cannot pass by
skipping.  ``.ci/run`` installs both (``apt-get install redis-server postgresql``).

Postgres refuses to run as root: as root the server runs as the ``postgres`` user, in a
directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    reason = f"{what} is not installed (apt-get install -y redis-server postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {reason}")
    pytest.skip(reason)


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S}s")


class RedisServer:
    """``redis-server`` on a free loopback port, without persistence (a restart is empty,
    as a flushed or replaced Redis is)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.root), "--save", "", "--appendonly", "no"]
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 (the server holds it)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresServer:
    """A Postgres cluster of its own (initdb) on a free loopback port, trust auth for
    loopback, one database ``waystone``.  ``url`` is what ``[ledger] url`` takes."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/waystone"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8")
        self.start()
        self._run(
            str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", self.user, "waystone",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "postgres.log"), "-w", "-t", str(int(START_TIMEOUT_S)), "start",
        )  # fmt: skip
        _wait_port(self.port, None, "postgres")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def reset(self) -> None:
        """Drop and recreate the database: each test starts from an empty ledger."""
        common = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        self._run(str(self.bindir / "dropdb"), *common, "--force", "--if-exists", "waystone")
        self._run(str(self.bindir / "createdb"), *common, "waystone")


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    assert binary is not None
    return binary


@pytest.fixture
def redis_server(redis_binary: str) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for one test (starting one takes a few ms)."""
    with tempfile.TemporaryDirectory(prefix="waystone-redis-") as root:
        server = RedisServer(redis_binary, Path(root))
        server.start()
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresServer]:
    """One Postgres for the session (initdb takes seconds); see ``postgres_server``."""
    bindir = _postgres_bin()
    if bindir is None:
        _missing("postgres")
    assert bindir is not None
    with tempfile.TemporaryDirectory(prefix="waystone-pg-") as root:
        server = PostgresServer(bindir, Path(root))
        server.init()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):  # a test stopped it
                server.stop("immediate")


@pytest.fixture
def postgres_server(postgres_cluster: PostgresServer) -> PostgresServer:
    """The session's Postgres, running, with an empty ``waystone`` database."""
    try:
        postgres_cluster.reset()
    except subprocess.CalledProcessError:
        postgres_cluster.start()  # a test stopped it
        postgres_cluster.reset()
    return postgres_cluster
