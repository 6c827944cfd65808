"""Every unit test file is named after the module it tests (mitmproxy's filename_matching).

`tests/unit/` mirrors the packages: `tests/unit/core/test_x.py` tests `waystone_cli/core/x.py`,
`tests/unit/ledger/test_x.py` tests `waystone_cli/ledger/x.py`, `tests/unit/daemon/.../test_x.py`
tests `daemon/.../x.py`, and a file at the top, `tests/unit/test_x.py`, tests the top-level
module `waystone_cli/x.py`. A module may be a package (`x/__init__.py`). The few files that
test a concept across several modules are listed below, each with its reason. Every mismatch
is reported at once, so a reader sees the whole gap in one run.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "tests" / "unit"

# The first folder under tests/unit/ names the package it mirrors; no folder is waystone_cli/.
PACKAGES = {"core": "waystone_cli/core", "ledger": "waystone_cli/ledger", "daemon": "daemon"}

CONCEPTS = {
    "test_imports.py": "the import direction between core, ledger, commands and daemon",
    "test_filename_matching.py": "this layout itself",
    "ledger/test_known_entities.py": "the writer's memory of known entities spans"
    " ledger.entities, ledger.batch and ledger.writer",
    "core/test_counters_eviction.py": "counters evicted by core.counters and read back from"
    " the ledger by ledger.counters must agree",
    "ledger/test_flagged.py": "the flagged column (m009_flagged) spans ledger.migrations,"
    " ledger.batch, ledger.spill, ledger.reports and ledger.export",
}


def expected_module(test_file: Path) -> Path:
    """The module that `test_file` is named after, relative to the repository root."""
    parts = test_file.relative_to(UNIT).parts
    folders, name = parts[:-1], parts[-1].removeprefix("test_").removesuffix(".py")
    if folders and folders[0] in PACKAGES:
        base = Path(PACKAGES[folders[0]], *folders[1:])
    else:
        base = Path("waystone_cli", *folders)
    return base / f"{name}.py"


def module_exists(module: Path) -> bool:
    return (ROOT / module).is_file() or (ROOT / module.with_suffix("") / "__init__.py").is_file()


def mismatches() -> list[str]:
    """Each unit test file that names no module, with the module it would need."""
    found = []
    for test_file in sorted(UNIT.rglob("test_*.py")):
        relative = test_file.relative_to(UNIT).as_posix()
        if relative in CONCEPTS:
            continue
        module = expected_module(test_file)
        if not module_exists(module):
            found.append(f"tests/unit/{relative}: no module {module.as_posix()}")
    return found


def test_every_concept_listed_still_exists() -> None:
    missing = [name for name in CONCEPTS if not (UNIT / name).is_file()]
    assert missing == []


def test_expected_module_follows_the_mirror() -> None:
    assert expected_module(UNIT / "core" / "test_pricing.py") == Path(
        "waystone_cli/core/pricing.py"
    )
    assert expected_module(UNIT / "daemon" / "request" / "test_body.py") == Path(
        "daemon/request/body.py"
    )
    assert expected_module(UNIT / "test_paths.py") == Path("waystone_cli/paths.py")


def test_every_unit_test_file_names_a_module() -> None:
    assert mismatches() == []
