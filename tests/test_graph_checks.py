"""A `DEERFLOW_LANGGRAPH_CONFIG` whose graphs cannot be loaded stops the processes at start-up,
naming the reason: the web process as it imports its application, and every management command
(`migrate`, which `scripts/serve` and `scripts/cluster` run first, `runs_worker`, `check`)
through the system check runs.E001. Before, the server started and every run was a 500."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import REPO_ROOT
from tests.test_embedded_install import newcomer_env

GRAPH_FILE = """
from langgraph.graph import StateGraph
from typing_extensions import TypedDict

class State(TypedDict):
    n: int

builder = StateGraph(State)
builder.add_node("one", lambda state: {"n": state["n"] + 1})
builder.set_entry_point("one")
graph = builder.compile()

def broken():
    raise RuntimeError("no model configured")
"""


def config(tmp_path: Path, graphs: dict[str, str]) -> Path:
    (tmp_path / "graph.py").write_text(GRAPH_FILE)
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": graphs}))
    return path


def run_python(tmp_path: Path, config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = newcomer_env(
        tmp_path,
        SECRET_KEY="a-key",
        DEERFLOW_LANGGRAPH_CONFIG=str(config_path),
        DEERFLOW_AUTH_MODE="token",
    )
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )


BROKEN = {
    "missing config": (lambda tmp: tmp / "nowhere.json", "nowhere.json"),
    "missing file": (lambda tmp: config(tmp, {"g": "./absent.py:graph"}), "absent.py"),
    "missing attribute": (lambda tmp: config(tmp, {"g": "./graph.py:nothing"}), "'nothing'"),
    "not a graph": (lambda tmp: config(tmp, {"g": "./graph.py:State"}), "is not a graph"),
    "failing factory": (lambda tmp: config(tmp, {"g": "./graph.py:broken"}), "factory raised"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_the_web_process_does_not_start_on_a_graph_it_cannot_load(tmp_path, case):
    make, reason = BROKEN[case]
    result = run_python(tmp_path, make(tmp_path), "-c", "import deerflow_site.asgi")

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    assert reason in last_line


@pytest.mark.parametrize("case", ["missing config", "missing attribute"])
def test_management_commands_stop_on_the_system_check(tmp_path, case):
    make, reason = BROKEN[case]
    result = run_python(tmp_path, make(tmp_path), "manage.py", "check")

    assert result.returncode != 0
    assert "runs.E001" in result.stderr and reason in result.stderr


def test_a_loadable_config_starts_and_its_graph_is_registered(tmp_path):
    path = config(tmp_path, {"counter": "./graph.py:graph"})
    code = "import deerflow_site.asgi; from runs.engine import graph_specs; print(*graph_specs())"
    result = run_python(tmp_path, path, "-c", code)

    assert result.returncode == 0, result.stderr
    assert "counter" in result.stdout.split()
    assert run_python(tmp_path, path, "manage.py", "check").returncode == 0
