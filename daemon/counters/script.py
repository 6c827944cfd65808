"""The counters' Lua script (``counters.lua``), as the link loads and calls it.

One script holds every operation (``admit``, ``settle``, ``release``, ``sweep``,
``load``, ``read``, ``unlock``, ``loaded``), chosen by its first argument: one SHA to
load on each connection, one name to call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SCRIPT = (Path(__file__).parent / "counters.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
