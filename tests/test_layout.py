"""The house rules of the code's layout, checked on the source (imports, function-local ones
included): LangGraph only inside the engine, the engine only through its front door, no import
cycle between the apps, and one bridge between sync and async code."""

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import runs.engine

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("deerflow_site", "threads", "runs", "feedback")
ENGINE = "runs.engine"
#: The units whose imports must not form a cycle: the apps, with the engine counted apart.
APP_UNITS = ("threads", "runs", ENGINE, "feedback")
#: Beside the models, the record: what journal events are and how they are stored, and the
#: statements of a run's row on its hot path (runs.sql).
JOURNAL_RECORD = (
    "runs.journal.catalog",
    "runs.journal.store",
    "runs.journal.lifecycle",
    "runs.sql",
)
#: Modules that wire apps together: the admin, URL confs.
WIRING = (".admin", ".urls")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PROJECT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


def _imports(path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) of every import statement of a file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, tuple(alias.name for alias in node.names)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _unit(module: str) -> str | None:
    """The app unit a project module belongs to (None: the project package, migrations)."""
    if _within(module, ENGINE):
        return ENGINE
    top = module.split(".", 1)[0]
    return top if top in APP_UNITS else None


MODULES = _project_modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _within(m, ENGINE)))
def test_only_the_engine_imports_langgraph(module: str) -> None:
    imported = [name for name, _ in _imports(MODULES[module]) if _within(name, "langgraph")]

    assert imported == [], f"{module} imports {imported}: go through runs.engine"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not _within(m, ENGINE)))
def test_the_engine_is_used_through_its_front_door(module: str) -> None:
    public = set(runs.engine.__all__)
    wrong = [
        f"{name}.{', '.join(names)}" if names else name
        for name, names in _imports(MODULES[module])
        if _within(name, ENGINE) and (name != ENGINE or not set(names) <= public)
    ]

    assert wrong == [], f"{module} reaches into the engine: {wrong}"


def _in_record_layer(module: str) -> bool:
    return module.endswith(".models") or module in JOURNAL_RECORD


def _app_graph() -> dict[str, set[str]]:
    """unit -> units it imports. The record (models, and the journal's event catalogue and
    store) is the layer below every app: the engine writes runs, threads and the journal. The
    admin and URL confs are the layer above, wiring the apps together. Neither makes edges."""
    graph: dict[str, set[str]] = {unit: set() for unit in APP_UNITS}
    for module, path in MODULES.items():
        source = _unit(module)
        if source is None or module.endswith(WIRING) or _in_record_layer(module):
            continue
        for name, _ in _imports(path):
            target = _unit(name)
            if target is None or target == source or _in_record_layer(name):
                continue
            graph[source].add(target)
    return graph


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in_record_layer(m)))
def test_the_record_layer_imports_only_the_record_layer(module: str) -> None:
    wrong = [
        name
        for name, _ in _imports(MODULES[module])
        if _unit(name) is not None and not _in_record_layer(name)
    ]

    assert wrong == [], f"{module} is part of the record, yet imports {wrong}"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(unit: str) -> list[str] | None:
        if unit in visiting:
            return [*visiting[visiting.index(unit) :], unit]
        if unit in done:
            return None
        visiting.append(unit)
        for target in sorted(graph[unit]):
            found = visit(target)
            if found:
                return found
        visiting.pop()
        done.add(unit)
        return None

    for unit in graph:
        found = visit(unit)
        if found:
            return found
    return None


def test_no_import_cycle_between_apps() -> None:
    graph = _app_graph()

    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])} in {graph}"


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"threads": {"runs"}, "runs": {"threads"}}) == ["threads", "runs", "threads"]


# --- One bridge between sync and async code ---------------------------------------------------

#: The only package that calls asgiref's bridges or hands work to an event loop's executor.
BRIDGE = ROOT / "deerflow_site" / "bridge"
#: Names of the other ways across, as imported names or attributes (`asyncio.to_thread`,
#: `loop.run_in_executor`, Channels' `database_sync_to_async`, asgiref's classes).
CROSSINGS = {
    "sync_to_async",
    "async_to_sync",
    "SyncToAsync",
    "AsyncToSync",
    "database_sync_to_async",
    "to_thread",
    "run_in_executor",
}
#: Directories that hold no code of ours.
NOT_OURS = {".venv", "node_modules", "var", "__pycache__"}


def _python_files() -> Iterator[Path]:
    """Every Python file of the repository: the apps, tests, bench, scripts, migrations."""
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [
            d for d in subdirectories if d not in NOT_OURS and not d.startswith(".")
        ]
        for name in files:
            if name.endswith(".py"):
                yield Path(directory) / name


def _crossings(source: str) -> list[str]:
    """Where `source` crosses between sync and async code other than through the bridge."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [
                f"from {node.module} import {a.name}" for a in node.names if a.name in CROSSINGS
            ]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name == "asgiref.sync"]
        elif isinstance(node, ast.Attribute) and node.attr in CROSSINGS:
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_only_the_bridge_crosses_between_sync_and_async() -> None:
    wrong = {
        str(path.relative_to(ROOT)): found
        for path in _python_files()
        if BRIDGE not in path.parents and (found := _crossings(path.read_text()))
    }

    assert wrong == {}, f"use deerflow_site.bridge (call_sync, call_async) instead: {wrong}"


def test_the_bridge_check_finds_each_way_across() -> None:
    source = """
import asyncio
import asgiref.sync
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from asyncio import to_thread

async def f(loop):
    await asyncio.to_thread(print)
    await loop.run_in_executor(None, print)
    asgiref.sync.async_to_sync(f)
"""

    assert len(_crossings(source)) == 7
    # The bridge itself is the one exception.
    assert [path.name for path in BRIDGE.glob("*.py") if _crossings(path.read_text())]
