"""What every command needs to know: which config file, which ledger, which socket."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from waystone_cli import paths

if TYPE_CHECKING:
    import typer

    from waystone_cli.core.config import Config


@dataclass
class AppContext:
    config_path: Path
    debug: bool = False
    warned: bool = False  # the invalid config was reported once for this run

    def load(self) -> Config:
        from waystone_cli.core.config import load_config

        return load_config(self.config_path)

    def load_for_reading(self) -> Config:
        """The config for a command that only reads: an invalid file is reported once on
        stderr, and the sections that still validate on their own are used."""
        from waystone_cli.core.config import salvage_config
        from waystone_cli.core.errors import ConfigError

        try:
            return self.load()
        except ConfigError as err:
            if not self.warned:
                from waystone_cli import render

                render.print_note(f"warning: the config does not validate: {err}")
                self.warned = True
            return salvage_config(self.config_path)

    def ledger_path(self, config: Config | None = None) -> Path:
        config = config if config is not None else self.load_for_reading()
        if config.ledger.path:
            return Path(config.ledger.path).expanduser()
        return paths.default_ledger_path()

    def ledger_url(self, config: Config | None = None) -> str | None:
        """The Postgres ledger's URL (``[ledger] url``, an ``env:`` name resolved), or None
        for the DuckDB file."""
        from waystone_cli.core.cluster import server_url

        config = config if config is not None else self.load_for_reading()
        return server_url(config.ledger.url, "ledger.url")

    def socket_path(self) -> Path:
        return paths.default_socket_path()

    def query(self, name: str, **params: Any) -> Any:
        """Run a ledger query on Postgres, or through the daemon if it is up, else on the file."""
        from waystone_cli.ledger.access import run_query

        config = self.load_for_reading()
        return run_query(
            name,
            ledger_path=self.ledger_path(config),
            socket_path=self.socket_path(),
            ledger_url=self.ledger_url(config),
            **params,
        )


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext the root callback stored (a default one when called bare)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext(config_path=paths.config_path())
    return root.obj
