"""``waystone serve`` and ``waystone demo``: the only commands that reach the daemon.

The daemon package is imported lazily inside the commands, so the rest of the CLI never
pays for aiohttp at start-up.  ``serve`` prints what it is about to serve (paths,
providers, rulesets, auth) and warns about what would make it serve nothing useful.
With ``--workers N`` (N > 1) it checks that the counters and the ledger are shared, then
runs the supervisor (``daemon.process.workers``), which starts N copies of this same command,
each with the hidden ``--worker I``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer

from waystone_cli.context import app_context

if TYPE_CHECKING:
    from waystone_cli.core.config import Config
    from waystone_cli.render.startup import StartupFacts


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.command("demo")(demo)


def _check_host(host: str | None) -> str | None:
    from waystone_cli.core.config import is_listen_host

    if host is not None and not is_listen_host(host):
        raise typer.BadParameter(f'"{host}" is not an IP address or host name')
    return host


# Help texts escape "[" because Rich would read "[server]" as markup and drop it.
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None,
        "--host",
        callback=_check_host,
        help="Address to listen on (default: \\[server] host).",
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port to listen on (default: \\[server] port)."
    ),
    log_format: str | None = typer.Option(
        None, "--log-format", help="text or json (default: \\[server] log_format)."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Processes sharing the port; over 1 needs \\[cluster] redis_url and \\[ledger] url.",
    ),
    worker: int = typer.Option(0, "--worker", hidden=True, min=0),
) -> None:
    """Run the gateway daemon in the foreground."""
    from daemon.process.instance import ensure_not_serving
    from daemon.server import run
    from daemon.state import Settings
    from waystone_cli import __version__
    from waystone_cli.core.cluster import instance_name
    from waystone_cli.core.workers import require_shared_servers, worker_names
    from waystone_cli.render.startup import StartupFacts

    context = app_context(ctx)
    config = context.load()
    require_shared_servers(config, workers)
    fmt = log_format or config.server.log_format
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    settings = Settings(
        config_path=context.config_path,
        ledger_path=context.ledger_path(config),
        # One admin socket, the first worker's: the workers share counters and ledger.
        socket_path=context.socket_path() if worker <= 1 else None,
        host=host,
        port=port,
        log_format=fmt,
        worker=worker,
    )
    if worker:
        run(settings)
        return
    ensure_not_serving(settings.ledger_path)
    _announce(
        StartupFacts(
            config=config,
            config_path=settings.config_path,
            ledger_path=settings.ledger_path,
            socket_path=settings.socket_path,
            url=f"http://{host or config.server.host}:{port or config.server.port}/v1",
            version=__version__,
            workers=worker_names(instance_name(config), workers) if workers > 1 else (),
        )
    )
    if workers > 1:
        _supervise(config, settings, workers)
    else:
        run(settings)


# ``settings`` is the daemon's ``Settings``: this module names the daemon's types only
# inside the commands (tests/unit/test_imports.py).
def _supervise(config: Config, settings: Any, workers: int) -> None:
    from daemon.process.instance import serving
    from daemon.process.workers import check_port_free, supervise
    from daemon.server import refuse_open_without_keys
    from waystone_cli.core.cluster import instance_name, server_url

    # A missing env: variable fails here, once, not in every worker at each restart.
    server_url(config.cluster.redis_url, "cluster.redis_url")
    server_url(config.ledger.url, "ledger.url")
    host = settings.host or config.server.host
    port = settings.port or config.server.port
    # What would make every worker fail at start fails here, once.
    refuse_open_without_keys(host, len(config.keys))
    check_port_free(host, port)
    specs = _worker_specs(settings, instance_name(config), workers)
    with serving(settings.ledger_path, f"http://{host}:{port}/v1", workers=workers):
        code = supervise(specs, log_format=settings.log_format or "text")
    raise typer.Exit(code)


def _worker_specs(settings: Any, parent: str, workers: int) -> list[Any]:
    """Each worker's command: this ``serve`` with the same options and ``--worker I``."""
    from daemon.process.workers import WorkerSpec
    from waystone_cli.core.workers import WORKER_VARIABLE, worker_names

    base = [sys.executable, "-m", "waystone_cli.main", "--config", str(settings.config_path)]
    options = ["serve", "--log-format", settings.log_format or "text"]
    if settings.host is not None:
        options += ["--host", settings.host]
    if settings.port is not None:
        options += ["--port", str(settings.port)]
    return [
        WorkerSpec(
            name=name,
            command=[*base, *options, "--worker", str(i)],
            env={**os.environ, WORKER_VARIABLE: name},
        )
        for i, name in enumerate(worker_names(parent, workers), start=1)
    ]


def _announce(facts: StartupFacts) -> None:
    from waystone_cli import render
    from waystone_cli.core.config.warnings import config_warnings
    from waystone_cli.render.startup import startup_lines, startup_warnings

    config = facts.config
    for line in startup_lines(facts):
        render.print_line(line)
    for warning in [*startup_warnings(facts), *config_warnings(config, os.environ)]:
        render.print_note(f"warning: {warning}")


def demo(
    ctx: typer.Context,
    requests: int = typer.Option(36, "--requests", help="How many sample requests to send."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep the demo home folder and print its path."
    ),
) -> None:
    """Offline demo: the gateway on the mock provider, rulesets at work, explain, usage."""
    from waystone_cli.demo import run_demo
    from waystone_cli.render import print_line

    run_demo(requests=requests, keep=keep, echo=print_line)
