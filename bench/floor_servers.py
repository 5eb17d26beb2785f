"""Start and stop the floors (servers of no API, what the stack costs at least), as
bench/servers.py starts ours, each as subprocesses on 127.0.0.1.

- floor: the stack's floor (bench/floor_app.py): the same daphne and Django as ours-sqlite,
  serving the echo graph with our SQLite saver from three plain views, nothing stored beyond the
  checkpoints. It serves the create+wait, POST /threads and first-event phases only.
- floor-durable: the floor with the least durable record, the thread's and run's rows in plain
  SQL on sqlite3 (a run's start committed before its graph runs, its end after).
- floor-split: the floor of the split layout (bench/floor_split.py): a daphne web process and a
  worker process on a throwaway PostgreSQL + Redis, plain SQL, one channels_redis message each
  way per run, our PostgreSQL saver. Not in the default list (servers.DEFAULT_SERVER_NAMES).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from servers import (
    HOST,
    OUR_PYTHON,
    REPO_DIR,
    Server,
    ServerError,
    _our_env,
    _spawn,
    _stop,
    _tail,
    _wait_ready,
    free_port,
)


@contextlib.contextmanager
def floor_server(workdir: Path, *, durable: bool = False) -> Iterator[Server]:
    """The stack's floor (bench/floor_app.py) as one daphne process, like ours-sqlite's;
    `durable`: with the least durable record of each thread and run (`floor-durable`)."""
    name = "floor-durable" if durable else "floor"
    var_dir = workdir / name
    var_dir.mkdir()
    logfile = workdir / f"{name}.log"
    env = {
        **_our_env(var_dir, {}),
        "DJANGO_SETTINGS_MODULE": "bench.floor_settings",
        "FLOOR_DURABLE": "1" if durable else "0",
    }
    port = free_port()
    command = [str(OUR_PYTHON), "-m", "deerflow_site.server", "-b", HOST, "-p", str(port)]
    web = _spawn([*command, "bench.floor_app:application"], cwd=REPO_DIR, env=env, logfile=logfile)
    try:
        base_url = f"http://{HOST}:{port}/api"
        _wait_ready(f"{base_url}/ok", [web], logfile)
        yield Server(
            name=name,
            description="the stack's floor: daphne + Django (no middleware) + the echo graph "
            "with our SQLite saver, "
            + ("the thread's and run's rows in plain SQL" if durable else "nothing else stored"),
            base_url=base_url,
            web=web,
            logs=[logfile],
            phases=("create_wait", "threads", "first_event"),
        )
    finally:
        _stop(web)


@contextlib.contextmanager
def floor_split_server(workdir: Path, extra_env: dict[str, str]) -> Iterator[Server]:
    """The split layout's floor (bench/floor_split.py) on the PostgreSQL + Redis of
    `extra_env` (DATABASE_URL, REDIS_URL; DEERFLOW_WORKER_CONCURRENCY as ours): one daphne web
    process and one worker process, as ours-postgres-split's."""
    name = "floor-split"
    var_dir = workdir / name
    var_dir.mkdir()
    logfile = workdir / f"{name}.log"
    env = {
        **_our_env(var_dir, extra_env),
        "DJANGO_SETTINGS_MODULE": "bench.floor_settings",
        "FLOOR_URLCONF": "bench.floor_split",
    }
    module = [str(OUR_PYTHON), "-m", "bench.floor_split"]
    with logfile.open("ab") as out:
        if subprocess.run(
            [*module, "setup"], cwd=REPO_DIR, env=env, stdout=out, stderr=out
        ).returncode:
            raise ServerError(f"bench.floor_split setup failed:\n{_tail(logfile)}")
    port = free_port()
    command = [str(OUR_PYTHON), "-m", "deerflow_site.server", "-b", HOST, "-p", str(port)]
    web = _spawn(
        [*command, "bench.floor_split:application"], cwd=REPO_DIR, env=env, logfile=logfile
    )
    worker_log = workdir / f"{name}-worker.log"
    worker = _spawn([*module, "runs_worker"], cwd=REPO_DIR, env=env, logfile=worker_log)
    try:
        base_url = f"http://{HOST}:{port}/api"
        _wait_ready(f"{base_url}/ok", [web, worker], logfile)
        yield Server(
            name=name,
            description="the split layout's floor: daphne + Django (no middleware) and one "
            "worker process, PostgreSQL (plain SQL, our saver) + Redis (channels_redis, one "
            "message each way)",
            base_url=base_url,
            web=web,
            others=[worker],
            logs=[logfile, worker_log],
            phases=("create_wait", "threads"),
        )
    finally:
        _stop(worker)
        _stop(web)
