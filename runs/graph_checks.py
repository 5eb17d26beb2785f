"""The registered graphs are loaded when a process starts, so a `DEERFLOW_LANGGRAPH_CONFIG` that
cannot be read, or names a file, module or attribute that is not a graph, stops it with the
reason instead of making every run a 500.

`load_all_graphs` runs as the web process imports its application (`deerflow_site/asgi.py`); the
system check `graphs_load` runs before `migrate` (hence in `scripts/serve` and `scripts/cluster`),
`runs_worker` and every other management command.
"""

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from runs.engine import graph_specs, load_graph


def load_all_graphs() -> list[str]:
    """Load every registered graph (each once per process; the runs then find it loaded).

    Returns the graph ids. Raises ImproperlyConfigured naming the config or the graph that
    cannot be loaded.
    """
    graph_ids = list(graph_specs())
    for graph_id in graph_ids:
        load_graph(graph_id)
    return graph_ids


@checks.register()
def graphs_load(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """runs.E001 when a registered graph cannot be loaded."""
    try:
        load_all_graphs()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="runs.E001", hint="see DEERFLOW_LANGGRAPH_CONFIG")]
    return []
