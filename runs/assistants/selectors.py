"""Reads of assistants: the registered graphs as the SDK's `Assistant`, searched and sorted."""

import datetime
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from runs.engine import GraphSpec, graph_file, graph_specs

SORT_FIELDS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")
ASSISTANT_FIELDS = (
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
)
_started_at = datetime.datetime.now(datetime.UTC)


def _source_file(spec: GraphSpec) -> Path | None:
    path = graph_file(spec.source, spec.base_dir)
    if path is not None:
        return path
    found = importlib.util.find_spec(spec.source.rpartition(":")[0])
    return Path(found.origin) if found is not None and found.origin else None


@cache
def _defined_at(spec: GraphSpec) -> str:
    """When the graph's code last changed: the same answer from every server process."""
    try:
        path = _source_file(spec)
        if path is None:
            return _started_at.isoformat()
        moment = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC)
    except (OSError, ImportError, ValueError):
        moment = _started_at
    return moment.isoformat()


def assistant_payload(spec: GraphSpec) -> dict[str, Any]:
    """The `Assistant` of a registered graph."""
    defined_at = _defined_at(spec)
    return {
        "assistant_id": str(spec.assistant_id),
        "graph_id": spec.graph_id,
        "config": {},
        "context": {},
        "created_at": defined_at,
        "updated_at": defined_at,
        "metadata": {"created_by": "system"},
        "version": 1,
        "name": spec.graph_id,
        "description": None,
    }


def search_assistants(
    *,
    graph_id: str | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
) -> list[dict[str, Any]]:
    """Assistants matching every filter: exact graph id, name substring, metadata subset."""
    found = [assistant_payload(spec) for spec in graph_specs().values()]
    if graph_id:
        found = [a for a in found if a["graph_id"] == graph_id]
    if name:
        found = [a for a in found if name.lower() in a["name"].lower()]
    if metadata:
        found = [a for a in found if all(a["metadata"].get(k) == v for k, v in metadata.items())]
    found.sort(key=lambda a: a["name"])  # a stable tie-break, whatever the order asked
    found.sort(key=lambda a: a[sort_by], reverse=sort_order == "desc")
    return found
