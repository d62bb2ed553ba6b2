"""Faust's and aiokafka's private members are used only in streams/runtime/, and exactly those of its checklist."""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import aiokafka
import faust
import mode

from streams.runtime import FAUST_PRIVATE_MEMBERS

ROOT = Path(__file__).resolve().parents[2]
#: Found as this module is imported, before any test can have put a stand-in for one in sys.modules.
LIBRARY_FOLDERS = {library.__name__: Path(str(library.__file__)).parent for library in (faust, aiokafka, mode)}
LIBRARIES = tuple(LIBRARY_FOLDERS)
RUNTIME = "streams/runtime/"


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def python_files(folder: Path) -> list[Path]:
    hidden = (path for path in folder.rglob("*.py") if any(p.startswith(".") for p in path.relative_to(folder).parts))
    return sorted(set(folder.rglob("*.py")) - set(hidden))


@cache
def library_private_names() -> frozenset[str]:
    """Every private name the installed libraries define: methods, class and instance attributes, module names."""
    names: set[str] = set()
    for folder in LIBRARY_FOLDERS.values():
        for path in python_files(folder):
            for node in ast.walk(ast.parse(path.read_bytes())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return frozenset(name for name in names if is_private(name))


def project_sources() -> dict[str, ast.Module]:
    """Every module of the project but its tests, by path from the root."""
    sources: dict[str, ast.Module] = {}
    for path in python_files(ROOT):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {"tests", "build"} or "site-packages" in relative.parts:
            continue
        sources[relative.as_posix()] = ast.parse(path.read_bytes(), filename=str(path))
    return sources


def library_imports(tree: ast.Module) -> set[str]:
    """Names a module binds to the libraries' modules and classes."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in LIBRARIES:
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            bound.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] in LIBRARIES
            )
    return bound


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def library_classes(sources: dict[str, ast.Module]) -> set[str]:
    """Names of the project's classes that derive from a library class, directly or through one another."""
    classes = [
        (node, library_imports(tree)) for tree in sources.values() for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]
    derived: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node, bound in classes:
            if node.name not in derived and any(root_name(base) in bound | derived for base in node.bases):
                derived.add(node.name)
                changed = True
    return derived


def references(tree: ast.Module, derived: set[str]) -> set[str]:
    """The libraries' private names a module uses: imported, accessed, looked up by name, or overridden.

    An access on `self` or `cls`, or a method defined, counts only inside a class deriving from a library
    class: elsewhere such a name is the project's own."""
    private = library_private_names()
    found: set[str] = set()

    def visit(node: ast.AST, in_library_class: bool) -> None:
        if isinstance(node, ast.ClassDef):
            in_library_class = node.name in derived
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in LIBRARIES:
            found.update(alias.name for alias in node.names if is_private(alias.name))
        elif isinstance(node, ast.Attribute) and node.attr in private:
            on_own = isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            if in_library_class or not on_own:
                found.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and in_library_class and node.name in private:
            found.add(node.name)
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr"} and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and node.args[1].value in private
        ):
            on_own = isinstance(node.args[0], ast.Name) and node.args[0].id in {"self", "cls"}
            if in_library_class or not on_own:
                found.add(node.args[1].value)
        for child in ast.iter_child_nodes(node):
            # A function nested in a method is still that class's code; a class nested anywhere decides anew.
            visit(child, in_library_class)

    visit(tree, False)
    return found


@cache
def where_used() -> dict[str, set[str]]:
    sources = project_sources()
    derived = library_classes(sources)
    used: dict[str, set[str]] = defaultdict(set)
    for path, tree in sources.items():
        for name in references(tree, derived):
            used[name].add(path)
    return dict(used)


def test_library_internals_are_used_only_in_streams_runtime() -> None:
    outside = {
        name: sorted(path for path in paths if not path.startswith(RUNTIME)) for name, paths in where_used().items()
    }
    assert {name: paths for name, paths in outside.items() if paths} == {}


def test_the_checklist_names_every_private_member_used_and_no_other() -> None:
    assert set(where_used()) == set(FAUST_PRIVATE_MEMBERS)


def test_every_private_member_on_the_checklist_still_exists_in_the_installed_libraries() -> None:
    assert set(FAUST_PRIVATE_MEMBERS) - library_private_names() == set()


def test_the_scan_sees_each_kind_of_use_and_leaves_the_projects_own_names_alone() -> None:
    sample = ast.parse(
        "from faust.streams import _current_event\n"
        "from faust.transport.drivers.aiokafka import Consumer\n"
        "class Mine(Consumer):\n"
        "    def _new_offset(self, tp): return self._acked\n"
        "class Other(Mine):\n"
        "    def _commit_handler(self): pass\n"
        "class Plain:\n"
        "    def _new_offset(self): return self._acked, getattr(self, '_dbs')\n"
        "def f(store, client):\n"
        "    return store._dbs, getattr(client, '_topics', None)\n"
    )
    sources = {"sample.py": sample}
    assert references(sample, library_classes(sources)) == {
        "_current_event", "_new_offset", "_acked", "_commit_handler", "_dbs", "_topics"
    }
