"""Where waystone keeps its files.

Resolution order for the config file: an explicit ``--config PATH``, else
``$WAYSTONE_CONFIG``, else ``config.toml`` in the default config folder.  The
default folders are platformdirs' for "waystone", unless ``$WAYSTONE_HOME`` is set,
in which case config, ledger and admin socket all live directly under that folder
(tests and the demo use this to stay isolated).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "waystone"


@dataclass(frozen=True)
class Paths:
    config: Path
    ledger: Path
    socket: Path

    @property
    def lock(self) -> Path:
        return self.config.with_name(self.config.name + ".lock")


def _home() -> Path | None:
    home = os.environ.get("WAYSTONE_HOME")
    return Path(home).expanduser() if home else None


def default_config_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def default_data_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def default_runtime_dir() -> Path:
    home = _home()
    if home is not None:
        return home
    import platformdirs

    return Path(platformdirs.user_runtime_dir(APP_NAME))


def config_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("WAYSTONE_CONFIG")
    if env:
        return Path(env).expanduser()
    return default_config_dir() / "config.toml"


def default_ledger_path() -> Path:
    return default_data_dir() / "ledger.duckdb"


def default_socket_path() -> Path:
    return default_runtime_dir() / "admin.sock"
