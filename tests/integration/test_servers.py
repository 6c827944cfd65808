"""The test fixtures' real servers answer, and survive what the fault tests do to them."""

from __future__ import annotations

import socket
import subprocess

from tests.servers import PostgresServer, RedisServer


def _redis(port: int, *command: str) -> bytes:
    parts = [f"*{len(command)}\r\n".encode()]
    for arg in command:
        parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"".join(parts))
        return s.recv(1024)


def test_redis_server_answers_and_restarts_empty(redis_server: RedisServer) -> None:
    assert redis_server.url.startswith("redis://127.0.0.1:")
    assert _redis(redis_server.port, "SET", "k", "v") == b"+OK\r\n"
    redis_server.restart()
    assert _redis(redis_server.port, "GET", "k") == b"$-1\r\n"  # no persistence


def _psql(server: PostgresServer, sql: str) -> str:
    out = subprocess.run(
        ["psql", server.url, "-Atc", sql], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def test_postgres_server_answers_and_starts_each_test_empty(
    postgres_server: PostgresServer,
) -> None:
    assert _psql(postgres_server, "SELECT 1 + 1") == "2"
    _psql(postgres_server, "CREATE TABLE t (x int)")
    postgres_server.reset()
    assert _psql(postgres_server, "SELECT count(*) FROM pg_tables WHERE tablename = 't'") == "0"
