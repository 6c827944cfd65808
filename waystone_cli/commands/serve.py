"""``waystone serve`` and ``waystone demo``: the only commands that reach the daemon.

The daemon package is imported lazily inside the commands, so the rest of the CLI never
pays for aiohttp at start-up.  ``serve`` prints what it is about to serve (paths,
providers, rulesets, auth) and warns about what would make it serve nothing useful.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from waystone_cli.context import app_context

if TYPE_CHECKING:
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
) -> None:
    """Run the gateway daemon in the foreground."""
    from daemon.instance import ensure_not_serving
    from daemon.server import run
    from daemon.state import Settings
    from waystone_cli import __version__
    from waystone_cli.render.startup import StartupFacts

    context = app_context(ctx)
    config = context.load()
    fmt = log_format or config.server.log_format
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    settings = Settings(
        config_path=context.config_path,
        ledger_path=context.ledger_path(config),
        socket_path=context.socket_path(),
        host=host,
        port=port,
        log_format=fmt,
    )
    ensure_not_serving(settings.ledger_path)
    _announce(
        StartupFacts(
            config=config,
            config_path=settings.config_path,
            ledger_path=settings.ledger_path,
            socket_path=settings.socket_path,
            url=f"http://{host or config.server.host}:{port or config.server.port}/v1",
            version=__version__,
        )
    )
    run(settings)


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
