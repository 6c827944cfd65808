"""``waystone serve`` and ``waystone demo``: the only commands that reach the daemon.

The daemon package is imported lazily inside the commands, so the rest of the CLI never
pays for aiohttp at start-up.
"""

from __future__ import annotations

import typer

from waystone_cli.context import app_context


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
    root.command("demo")(demo)


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: [server] host)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on (default: [server] port)."
    ),
    log_format: str | None = typer.Option(
        None, "--log-format", help="text or json (default: [server] log_format)."
    ),
) -> None:
    """Run the gateway daemon in the foreground."""
    from daemon.server import run
    from daemon.state import Settings

    context = app_context(ctx)
    config = context.load()
    fmt = log_format or config.server.log_format
    if fmt not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    run(
        Settings(
            config_path=context.config_path,
            ledger_path=context.ledger_path(config),
            socket_path=context.socket_path(),
            host=host,
            port=port,
            log_format=fmt,
        )
    )


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
