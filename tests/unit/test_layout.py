"""The layout shows the architecture: each folder one part, imports running one way, no room too big."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What each part may import of the others, lowest first. A part never imports one above it.
ALLOWED: dict[str, set[str]] = {
    "processors": set(),
    "schemas": {"processors"},
    "localbroker": set(),
    "config": {"processors"},
    "rollwatch_client": {"processors", "schemas"},
    "sinks": {"processors", "schemas", "config"},
    "web": {"processors", "schemas", "config", "sinks"},
    "replay": {"processors", "schemas"},
    "generator": {"processors", "schemas"},
    "streams": {"processors", "schemas", "config", "sinks", "web"},
    "cli": {"processors", "schemas", "config", "sinks", "web", "streams", "replay", "generator",
            "rollwatch_client", "localbroker"},
    "bench": {"processors", "schemas", "config", "sinks", "web", "streams", "replay", "generator",
              "rollwatch_client", "localbroker", "cli"},
}
#: Where each part's source lives.
FOLDERS = {part: ROOT / part for part in ALLOWED} | {"rollwatch_client": ROOT / "clients/python/rollwatch_client"}


def source_files(part: str) -> list[Path]:
    return sorted(path for path in FOLDERS[part].rglob("*.py") if "migrations" not in path.parts or part != "sinks")


def imported_parts(path: Path) -> set[str]:
    """Every part of the project a module imports, at its top or inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots & set(ALLOWED)


def test_every_import_runs_from_a_higher_part_to_a_lower_one() -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_parts(path) - ALLOWED[part] - {part})
        for part in ALLOWED
        for path in source_files(part)
    }
    assert {name: parts for name, parts in wrong.items() if parts} == {}


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef late() -> None:\n    from streams.worker import build_worker\n")
    assert imported_parts(sample) == {"streams"}


def test_every_python_folder_of_the_project_is_a_known_part() -> None:
    tops = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert tops <= set(ALLOWED), f"a new top-level package needs a place in ALLOWED: {sorted(tops - set(ALLOWED))}"


def test_no_part_holds_more_than_35_percent_of_the_source_and_no_file_is_over_600_lines() -> None:
    lines = {part: sum(len(p.read_text().splitlines()) for p in source_files(part)) for part in ALLOWED}
    total = sum(lines.values())
    shares = {part: round(100 * n / total, 1) for part, n in lines.items()}
    assert max(shares.values()) <= 35, shares
    long = {
        str(path.relative_to(ROOT)): n
        for part in ALLOWED
        for path in source_files(part)
        if (n := len(path.read_text().splitlines())) > 600
    }
    assert long == {}
