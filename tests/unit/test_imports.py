"""The import direction (STYLE.md), checked on the source with ``ast``.

- ``waystone_cli.core`` imports no typer, rich, aiohttp or duckdb, anywhere;
- ``daemon`` never imports the CLI (``waystone_cli.commands``, ``waystone_cli.main``);
- the commands reach ``daemon`` only from ``serve.py``, and only inside functions;
- building the CLI imports none of the heavy libraries (start-up time);
- no two modules of ``daemon`` import each other, even through others or only for the
  type checker (a circle makes a wing impossible to read, or move, on its own).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    file: str
    line: int
    module: str
    top_level: bool  # executed at import time, not inside a function


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    rel = str(path.relative_to(ROOT))

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(rel, child.lineno, alias.name, not in_function)
            elif isinstance(child, ast.ImportFrom):
                module = _resolve(child, package)
                yield Import(rel, child.lineno, module, not in_function)
                for alias in child.names:  # `from pkg import module`
                    yield Import(rel, child.lineno, f"{module}.{alias.name}", not in_function)
            yield from visit(child, nested)

    yield from visit(tree, False)


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _is(module: str, *roots: str) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _where(found: list[Import]) -> list[str]:
    return [f"{i.file}:{i.line} {i.module}" for i in found]


def test_core_imports_no_framework() -> None:
    found = [
        i
        for path in _sources("waystone_cli/core")
        for i in imports_of(path)
        if _is(i.module, "typer", "rich", "aiohttp", "duckdb", "click")
    ]
    assert _where(found) == []


def test_daemon_never_imports_the_cli() -> None:
    found = [
        i
        for path in _sources("daemon")
        for i in imports_of(path)
        if _is(i.module, "waystone_cli.commands", "waystone_cli.main", "typer")
    ]
    assert _where(found) == []


def test_commands_reach_the_daemon_only_from_serve_and_lazily() -> None:
    found = [
        i
        for path in _sources("waystone_cli/commands")
        for i in imports_of(path)
        if _is(i.module, "daemon") and (path.name != "serve.py" or i.top_level)
    ]
    assert _where(found) == []


def _daemon_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in _sources("daemon")}
    return {
        name: {i.module for i in imports_of(path) if i.module in modules and i.module != name}
        for name, path in modules.items()
    }


def _circle_from(graph: dict[str, set[str]], start: str) -> list[str]:
    """The modules of one import circle through ``start``, or [] if there is none."""
    trail: dict[str, str] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        for imported in sorted(graph[module]):
            if imported == start:
                circle = [module]
                while circle[-1] != start:
                    circle.append(trail[circle[-1]])
                return circle[::-1]
            if imported not in trail:
                trail[imported] = module
                todo.append(imported)
    return []


def test_daemon_has_no_import_circle() -> None:
    graph = _daemon_graph()
    circles = {" -> ".join(c) for m in graph if (c := _circle_from(graph, m))}
    assert sorted(circles) == []


HEAVY = ("duckdb", "aiohttp", "genai_prices", "pyarrow", "plotext", "opentelemetry", "daemon")


def test_building_the_cli_imports_no_heavy_library() -> None:
    """What every `waystone` run pays: the root, every command module, the config."""
    code = (
        "import sys, json\n"
        "from waystone_cli.main import build_app\n"
        "build_app()\n"
        "from waystone_cli.core.config import load_config\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import duckdb", [("duckdb", True)]),
        ("def f():\n    import duckdb", [("duckdb", False)]),
        ("from . import errors", [("waystone_cli.core", True), ("waystone_cli.core.errors", True)]),
        (
            "from ..ledger import access",
            [("waystone_cli.ledger", True), ("waystone_cli.ledger.access", True)],
        ),
        ("class A:\n    def m(self):\n        import rich", [("rich", False)]),
    ],
)
def test_the_checker_sees_every_kind_of_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: list[tuple[str, bool]]
) -> None:
    fake_root = tmp_path
    path = fake_root / "waystone_cli" / "core" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert [(i.module, i.top_level) for i in imports_of(path)] == expected
