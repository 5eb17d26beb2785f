"""The reference server, `langgraph dev` (the LangGraph CLI's in-memory runtime) from
bench/.venv-reference, as bench/run starts it (bench/servers.py starts ours)."""

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from servers import (
    BENCH_DIR,
    HOST,
    REFERENCE_ENV,
    REFERENCE_VENV,
    START_TIMEOUT,
    Server,
    ServerError,
    _spawn,
    _stop,
    _tail,
    _wait_ready,
    free_port,
)

#: `langgraph dev`'s log line naming the port it listens on.
REFERENCE_PORT = re.compile(r"API:\s*http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def reference_server(workdir: Path, *, jobs_per_worker: int) -> Iterator[Server]:
    langgraph = REFERENCE_VENV / "bin" / "langgraph"
    if not langgraph.exists():
        raise ServerError(f"{langgraph} missing: run bench/run (it creates the reference venv)")
    # `langgraph dev` resolves graph paths against its working directory and keeps its state
    # there (.langgraph_api/): run it in a scratch directory holding links to the same files.
    home = workdir / "reference"
    home.mkdir()
    for name in ("graph.py", "chat_graph.py", "langgraph.json"):
        (home / name).symlink_to(BENCH_DIR / name)
    logfile = workdir / "reference.log"
    env = {**os.environ, **REFERENCE_ENV}
    command = [
        str(langgraph), "dev", "--no-browser", "--no-reload",
        "--n-jobs-per-worker", str(jobs_per_worker),
        "--port", str(free_port()), "--host", HOST, "--config", "langgraph.json",
    ]  # fmt: skip
    process = _spawn(command, cwd=home, env=env, logfile=logfile)
    try:
        port = _reference_port(process, logfile)
        base_url = f"http://{HOST}:{port}"
        _wait_ready(f"{base_url}/ok", [process], logfile)
        yield Server(
            name="reference",
            description=f"langgraph dev (in-memory runtime), --n-jobs-per-worker {jobs_per_worker}",
            base_url=base_url,
            web=process,
            logs=[logfile],
        )
    finally:
        _stop(process)


def _reference_port(process: subprocess.Popen, logfile: Path) -> int:
    """The port `langgraph dev` really listens on: it moves silently when the asked one is taken."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = REFERENCE_PORT.search(_tail(logfile, 200_000))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise ServerError(f"langgraph dev exited early:\n{_tail(logfile)}")
        time.sleep(0.2)
    raise ServerError(f"langgraph dev reported no port:\n{_tail(logfile)}")
