"""The graph registry: built-in graphs plus those of a `langgraph.json`, one assistant each.

`langgraph.json` is the LangGraph CLI's format, `{"graphs": {"id": "path/to/file.py:attr"}}` with
paths relative to the file, or `package.module:attr`. `attr` may be a compiled graph, a
`StateGraph` (compiled here) or a factory taking no argument or a config, returning either.
"""

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import threading
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from deerflow_site.api.ids import parse_uuid
from runs.engine.errors import AssistantNotFound
from runs.engine.graphs import BUILTIN_GRAPHS, SAMPLE_GRAPHS

ASSISTANT_NAMESPACE = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@dataclass(frozen=True)
class GraphSpec:
    """A registered graph: its id, its assistant's id and where its code is."""

    graph_id: str
    assistant_id: UUID
    source: str
    #: The directory relative file paths in `source` start from (None: a module path).
    base_dir: Path | None = None


def assistant_id_for(graph_id: str) -> UUID:
    return uuid5(ASSISTANT_NAMESPACE, graph_id)


def graph_specs() -> dict[str, GraphSpec]:
    """Every registered graph by id: the built-ins (with the sample graphs when the
    SAMPLE_GRAPHS setting is on), then the langgraph.json ones (which win)."""
    return _specs_for(settings.LANGGRAPH_CONFIG, settings.SAMPLE_GRAPHS)


@lru_cache(maxsize=8)
def _specs_for(config_path: str, samples: bool) -> dict[str, GraphSpec]:
    builtins = {**BUILTIN_GRAPHS, **(SAMPLE_GRAPHS if samples else {})}
    specs = {
        graph_id: GraphSpec(graph_id, assistant_id_for(graph_id), source)
        for graph_id, source in builtins.items()
    }
    if config_path:
        specs.update(_specs_from_file(Path(config_path)))
    return specs


def _specs_from_file(path: Path) -> dict[str, GraphSpec]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"cannot read the LangGraph config {path}: {exc}") from exc
    graphs = config.get("graphs") if isinstance(config, dict) else None
    if not isinstance(graphs, dict):
        raise ImproperlyConfigured(f'{path} must hold {{"graphs": {{"id": "file.py:attr"}}}}')
    specs = {}
    for graph_id, source in graphs.items():
        if isinstance(source, dict):  # the CLI also accepts {"path": ..., "description": ...}
            source = source.get("path")
        if not isinstance(source, str) or ":" not in source:
            raise ImproperlyConfigured(f"graph {graph_id!r} in {path}: expected 'file.py:attr'")
        specs[graph_id] = GraphSpec(
            graph_id, assistant_id_for(graph_id), source, path.resolve().parent
        )
    return specs


def resolve_assistant(value: str) -> GraphSpec:
    """The graph named by an assistant id (uuid5 of the graph id) or by its graph id."""
    specs = graph_specs()
    if value in specs:
        return specs[value]
    assistant_id = parse_uuid(value)
    if assistant_id is None:
        raise AssistantNotFound(f"Assistant {value!r} not found.")
    for spec in specs.values():
        if spec.assistant_id == assistant_id:
            return spec
    raise AssistantNotFound(f"Assistant {value!r} not found.")


def load_graph(graph_id: str) -> Pregel:
    """The compiled graph (no checkpointer), loaded once per process."""
    spec = graph_specs().get(graph_id)
    if spec is None:
        raise AssistantNotFound(f"Graph {graph_id!r} not found.")
    return _load(spec.source, spec.base_dir)


_load_lock = threading.Lock()


@cache
def _load_cached(source: str, base_dir: Path | None) -> Pregel:
    target = _import_target(source, base_dir)
    return _as_compiled(target, source)


def _load(source: str, base_dir: Path | None) -> Pregel:
    with _load_lock:  # two threads must not import the same graph file twice
        return _load_cached(source, base_dir)


def graph_file(source: str, base_dir: Path | None) -> Path | None:
    """The file a graph source names (`path/to/file.py:attr`); None for a module path."""
    location = source.rpartition(":")[0]
    if not (location.endswith(".py") or "/" in location):
        return None
    return Path(location) if base_dir is None else base_dir / location


def _import_target(source: str, base_dir: Path | None) -> Any:
    location, _, attr = source.rpartition(":")
    path = graph_file(source, base_dir)
    if path is not None:
        module = _import_file(path)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise ImproperlyConfigured(f"cannot import {location!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"{location!r} has no attribute {attr!r}") from None


def _import_file(path: Path) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise ImproperlyConfigured(f"graph file {path} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"deerflow_graph_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    # Like the LangGraph CLI's "dependencies": ["."]: a graph file may import its neighbours.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImproperlyConfigured(f"cannot load graph file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module


def _as_compiled(target: Any, source: str) -> Pregel:
    if isinstance(target, Pregel):
        return target
    if isinstance(target, StateGraph):
        return target.compile()
    if callable(target):
        if inspect.iscoroutinefunction(target):
            raise ImproperlyConfigured(f"{source}: async graph factories are not supported")
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):  # a class or builtin without one: no factory
            raise ImproperlyConfigured(f"{source} is not a graph ({target!r})") from None
        parameters = [
            p
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        try:
            made = target({"configurable": {}}) if parameters else target()
        except Exception as exc:  # the graph's own code: its failure is the config's problem
            raise ImproperlyConfigured(f"{source}: the factory raised {exc!r}") from exc
        if isinstance(made, Pregel | StateGraph):
            return _as_compiled(made, source)
        raise ImproperlyConfigured(f"{source}: the factory returned {type(made).__name__}")
    raise ImproperlyConfigured(f"{source} is not a graph ({type(target).__name__})")


async def graph_for_thread(graph_id: str) -> Pregel:
    """The graph bound to the running event loop's checkpointer."""
    from runs.engine.checkpointer import get_checkpointer

    saver = await get_checkpointer()
    # Cached on the saver (copying a Pregel for every run is wasted work), so that the copies
    # go when the saver goes.
    bound: dict[str, Pregel] = saver.bound_graphs  # type: ignore[attr-defined]
    graph = bound.get(graph_id)
    if graph is None:
        graph = bound[graph_id] = load_graph(graph_id).copy(update={"checkpointer": saver})
    return graph
