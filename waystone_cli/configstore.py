"""Read-modify-write of the TOML config, safe against concurrent ``waystone`` runs.

Every change goes through ``update_config(path, change)``:

1. take an exclusive ``flock`` on ``config.toml.lock`` beside the file (created if
   missing; never deleted, so two processes always lock the same inode);
2. read the file with ``tomllib`` (a missing file is an empty document);
3. let ``change`` edit a copy of the plain dict;
4. validate the result whole with ``parse_config``; if it fails, nothing is written and
   the ``ConfigError`` names the TOML path and what is wrong;
5. carry the difference over to the file's text with ``tomlkit`` (``tomlpatch``), so
   comments, order and layout survive; a file that did not exist is rendered whole;
6. write it to a temporary file in the same folder, fsync, ``os.replace`` over the old
   one and fsync the folder, so a crash leaves either the old or the new file.

The rendering of new text keeps the file readable: one ``[section.name]`` table per
entry, with small tables such as ``metadata`` and ``credits`` written inline.
"""

from __future__ import annotations

import copy
import fcntl
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from waystone_cli.core.config import (
    Config,
    parse_config,
    parse_config_text,
    parse_toml,
    read_config_text,
)
from waystone_cli.core.errors import UsageError

T = TypeVar("T")
Document = dict[str, Any]

# Top-level tables whose entries each get their own ``[section.name]`` header.
COLLECTIONS = ("providers", "prices", "users", "groups", "rules", "rulesets", "keys")


def lock_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".lock")


@contextmanager
def locked(config_path: Path) -> Iterator[None]:
    """Hold the exclusive lock that serialises every writer of ``config_path``."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(config_path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_document(config_path: Path) -> Document:
    """The file as the plain dict ``tomllib`` gives (empty when there is no file)."""
    return parse_toml(_read_text(config_path), str(config_path))


def _read_text(config_path: Path) -> str:
    """The file's text ("" when there is no file); not UTF-8 is a ConfigError."""
    return read_config_text(config_path) or ""


def load_document(config_path: Path) -> tuple[Document, Config]:
    """The raw document (what the admin wrote, for display) and its validated snapshot."""
    return parse_config_text(_read_text(config_path), str(config_path))


def update_config(config_path: Path, change: Callable[[Document], T]) -> T:
    """Apply ``change`` to the document under the lock; write only if it validates."""
    with locked(config_path):
        text = _read_text(config_path)
        before = parse_toml(text, str(config_path))
        doc = copy.deepcopy(before)
        result = change(doc)
        prune_empty(doc)
        parse_config(doc)
        write_text_atomic(config_path, edited_text(text, before, doc))
    return result


def edited_text(text: str, before: Document, after: Document) -> str:
    """``text`` changed to read as ``after``, keeping its comments and layout.

    The result is checked to read back as exactly ``after``; if an edit cannot be carried
    over faithfully, the whole file is rendered afresh (correct, without its comments)."""
    if text.strip():
        from waystone_cli.tomlpatch import patched_text

        patched = patched_text(text, before, after)
        if tomllib.loads(patched) == after:
            return patched
    return render_toml(after)


def write_config_text(config_path: Path, text: str, *, overwrite: bool) -> Config:
    """Write a whole config file (``waystone init``) after validating it, under the lock."""
    config = parse_config(parse_toml(text, "starter config"))
    with locked(config_path):
        if config_path.exists() and not overwrite:
            raise UsageError(f"{config_path} already exists (use --force to overwrite it)")
        write_text_atomic(config_path, text)
    return config


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file beside ``path``, fsync, rename over it, fsync the folder.

    A symlinked config (dotfile managers do that) is written through to its target."""
    import tempfile  # only writers need it; listing commands skip its imports

    path = path.resolve() if path.is_symlink() else path
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def timestamp() -> datetime:
    """The time written into ``added`` and ``created``: UTC, to the second (a TOML
    date-time that ``joined within 30d`` conditions read)."""
    return datetime.now(UTC).replace(microsecond=0)


def prune_empty(doc: Document) -> None:
    """Drop top-level tables that became empty, so ``rm`` of the last entry leaves no husk."""
    for key in [k for k, v in doc.items() if isinstance(v, dict) and not v]:
        del doc[key]


# --- rendering ------------------------------------------------------------------------


def render_toml(doc: Mapping[str, Any]) -> str:
    """TOML text for ``doc``: a table per entry, small nested tables inline.

    The text is checked to read back as exactly ``doc``; if some exotic value would not
    survive this layout, plain ``tomli_w.dumps`` (always faithful) is used instead.
    """
    import tomli_w

    chunks = [
        _table(_key(name), body)
        for name, body in doc.items()
        if isinstance(body, Mapping) and name not in COLLECTIONS
    ]
    for section in COLLECTIONS:
        body = doc.get(section)
        if isinstance(body, Mapping) and all(isinstance(v, Mapping) for v in body.values()):
            chunks.extend(_table(f"{_key(section)}.{_key(n)}", e) for n, e in body.items())
    text = "\n".join(chunks)
    if _collected(doc) and tomllib.loads(text) == doc:
        return text
    return tomli_w.dumps(doc)


def _collected(doc: Mapping[str, Any]) -> bool:
    """Every top-level value is a table (true of any valid config)."""
    return all(isinstance(v, Mapping) for v in doc.values())


def _table(header: str, body: Mapping[str, Any]) -> str:
    lines = [f"[{header}]"]
    lines.extend(f"{_key(k)} = {inline_value(v)}" for k, v in body.items())
    return "\n".join(lines) + "\n"


def inline_value(value: Any) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {inline_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(inline_value(v) for v in value) + "]"
    if isinstance(value, datetime):
        text = value.isoformat()
        return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
    import tomli_w

    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _key(key: str) -> str:
    import tomli_w

    # tomli-w quotes a key only when it must; reuse its rule through the public API.
    return tomli_w.dumps({key: 0}).rsplit(" = ", 1)[0]


# --- K=V values -----------------------------------------------------------------------

Scalar = str | int | float | bool | date | datetime | time


def parse_scalar(text: str) -> Scalar:
    """A ``K=V`` value: a TOML scalar when it parses as one (``true``, ``3``, a date), else
    the text itself.  ``inf`` and ``nan`` stay strings: nobody means them as metadata."""
    if text.strip() in ("inf", "+inf", "-inf", "nan", "+nan", "-nan"):
        return text
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, (dict, list)):
        return text
    return value  # type: ignore[no-any-return]


def parse_assignment(text: str) -> tuple[str, Scalar]:
    """``K=V`` → (K, scalar V); misuse (no ``=``, empty key) is a ``UsageError``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f'expected KEY=VALUE, got "{text}"')
    return key, parse_scalar(value.strip())
