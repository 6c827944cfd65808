"""The ``waystone`` command: the Typer root, its command modules, and error translation.

``main(argv)`` runs the command and returns the exit code; ``run()`` is the console
script.  Errors are translated here and nowhere else: a ``WaystoneError`` prints one red
line on stderr and exits 1 (2 for a ``UsageError`` and for Click's usage errors); any
other exception prints one line too, and its traceback only with ``--debug``.

Command modules are imported from a fixed list and each adds itself through
``register(root)``; they keep their heavy imports (duckdb, aiohttp, genai-prices)
inside the commands so that start-up stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import typer

from waystone_cli import paths
from waystone_cli.context import AppContext
from waystone_cli.core.errors import UsageError, WaystoneError

# Each top-level command, and the module under waystone_cli.commands that registers it
# with ``register(root)``.  A run names one command, so only its module is imported and
# turned into Click commands (Typer inspects every signature, which costs start-up time);
# a bare ``waystone``, ``--help`` or an unknown name loads them all.
COMMAND_MODULES: dict[str, str] = {
    "init": "init",
    "config": "config",
    "user": "users",
    "group": "groups",
    "provider": "providers",
    "rule": "rules",
    "ruleset": "rulesets",
    "key": "keys",
    "rules": "rules_explain",
    "usage": "usage",
    "prices": "prices",
    "serve": "serve",
    "demo": "serve",
    "cluster": "cluster",
    "alerts": "alerts",
}
_ROOT_OPTIONS_WITH_VALUE = ("--config",)

EXIT_ERROR = 1
EXIT_MISUSE = 2


def _print_version(value: bool) -> None:
    if value:
        from waystone_cli import __version__, render

        render.print_line(f"waystone {__version__}")
        raise typer.Exit()


def _root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        metavar="PATH",
        help="Config file (default: $WAYSTONE_CONFIG, else config.toml in the config folder).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print the version and exit.",
    ),
) -> None:
    """waystone: a self-hosted LLM gateway with per-end-user usage tracking."""
    state = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext(paths.config_path())
    state.config_path = paths.config_path(config)
    state.debug = debug
    ctx.obj = state


def build_app(command: str | None = None) -> typer.Typer:
    """The root app with every command, or only ``command``'s module when it is known."""
    app = typer.Typer(
        name="waystone",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion SHELL
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    else:
        modules = list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        importlib.import_module(f"waystone_cli.commands.{name}").register(app)
    _no_second_suggestion(app)
    return app


def _no_second_suggestion(app: typer.Typer) -> None:
    """Click already ends "No such command" with "Did you mean ...?"; Typer's own
    suggestion would repeat it."""
    app.suggest_commands = False
    for group in app.registered_groups:
        if group.typer_instance is not None:
            _no_second_suggestion(group.typer_instance)


def command_name(args: Sequence[str]) -> str | None:
    """The top-level command ``args`` names, skipping the root's options."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _ROOT_OPTIONS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``waystone`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    state = AppContext(config_path=paths.config_path())
    try:
        command = typer.main.get_command(build_app(command_name(args)))
        code = command.main(args=args, prog_name="waystone", standalone_mode=False, obj=state)
    except click.ClickException as err:  # usage errors derive from it
        return _click_error(err)
    except SystemExit as done:  # Typer's completion options exit when they are done
        return done.code if isinstance(done.code, int) else EXIT_ERROR if done.code else 0
    except click.Abort:
        from waystone_cli import render

        render.print_error("aborted")
        return EXIT_ERROR
    except WaystoneError as err:
        return _waystone_error(err, state.debug)
    except Exception as err:
        return _unexpected(err, state.debug)
    return code if isinstance(code, int) else 0


def _click_error(err: click.ClickException) -> int:
    from click.exceptions import NoArgsIsHelpError

    from waystone_cli import render

    if isinstance(err, NoArgsIsHelpError):
        # A bare `waystone` or `waystone user` asks what there is: help, not an error.
        render.print_text(err.format_message())
        return 0
    message = err.format_message()
    ctx = getattr(err, "ctx", None)
    if ctx is not None:
        message += f" (see '{ctx.command_path} --help')"
    render.print_error(message)
    return int(getattr(err, "exit_code", EXIT_ERROR))


def _waystone_error(err: WaystoneError, debug: bool) -> int:
    from waystone_cli import render

    if debug:
        _print_traceback(err)
    render.print_error(str(err))
    return EXIT_MISUSE if isinstance(err, UsageError) else EXIT_ERROR


def _unexpected(err: Exception, debug: bool) -> int:
    from waystone_cli import render

    if debug:
        _print_traceback(err)
        render.print_error(f"{type(err).__name__}: {err}")
    else:
        render.print_error(f"{type(err).__name__}: {err} (run with --debug for the traceback)")
    return EXIT_ERROR


def _print_traceback(err: BaseException) -> None:
    import traceback

    sys.stderr.write("".join(traceback.format_exception(err)))


def run() -> None:
    """The ``waystone`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
