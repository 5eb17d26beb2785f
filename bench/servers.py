"""Start and stop the servers under test, each as a subprocess on 127.0.0.1, and measure their RSS.

- reference: `langgraph dev` (the LangGraph CLI, in-memory runtime) from bench/.venv-reference,
  started by bench/reference.py.
- ours-sqlite: our server on its embedded default (SQLite, in-memory channel layer, embedded
  worker): one daphne process.
- ours-postgres: one daphne process with the embedded worker, on a throwaway PostgreSQL + Redis
  from scripts/services.py.
- ours-postgres-split: the same database and bus, but a web process with no worker plus one
  `manage.py runs_worker` process (the scaled-out layout). Memory is the web process's.
- ours-postgres-split-2x2: the same with two web processes (one port, SO_REUSEPORT: the kernel
  spreads connections over them) and two workers. Memory is the first web process's.
- aegra: the open peer Aegra (bench/aegra.py), on its own throwaway PostgreSQL.
- floor, floor-durable, floor-split: not servers of the API but the stack's floors, started by
  bench/floor_servers.py. floor-split is not in the default list (DEFAULT_SERVER_NAMES).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from processes import shared_port_listeners, tree_cpu_seconds, tree_rss_bytes

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUR_PYTHON = REPO_DIR / ".venv" / "bin" / "python"
REFERENCE_VENV = BENCH_DIR / ".venv-reference"
LANGGRAPH_CONFIG = BENCH_DIR / "langgraph.json"
HOST = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 8.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SERVICES_URL = re.compile(r"services: (DATABASE_URL|REDIS_URL)=(\S+)")

# Variables of the caller's shell that would change what our server is; the bench sets its own.
OUR_ENV_PREFIXES = ("DEERFLOW_", "DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "DJANGO_")
# The reference must stay on loopback: no CLI analytics, no tracing, no metadata beacons.
REFERENCE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "DO_NOT_TRACK": "1",
}

SERVER_NAMES = (
    "reference",
    "aegra",
    "ours-sqlite",
    "ours-postgres",
    "ours-postgres-split",
    "ours-postgres-split-2x2",
    "floor",
    "floor-durable",
    "floor-split",
)
#: What bench/run measures when not told: all but floor-split (a reference for the split work).
DEFAULT_SERVER_NAMES = tuple(name for name in SERVER_NAMES if name != "floor-split")


class ServerError(RuntimeError):
    """A server under test could not be started."""


@dataclass
class Server:
    name: str
    description: str
    base_url: str
    #: The process whose tree holds the open streams (RSS is measured on it and its children).
    web: subprocess.Popen
    others: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    #: The phases (bench/run.py PHASES) it serves; None: all of them.
    phases: tuple[str, ...] | None = None

    def rss_bytes(self) -> int:
        return tree_rss_bytes(self.web.pid)

    def os_threads(self) -> int:
        """OS threads of the web process tree (an open stream must not cost one)."""
        try:
            root = psutil.Process(self.web.pid)
            return sum(p.num_threads() for p in [root, *root.children(recursive=True)])
        except psutil.NoSuchProcess:
            return 0

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by every process of the server."""
        return sum(tree_cpu_seconds(pid) for pid in self.pids())

    def cpu_seconds_by_role(self) -> dict[str, float]:
        """CPU seconds so far of the web processes and of the separate workers (if any).

        Shape: {"web": s, "worker": s}; "worker" only for a split layout (`manage.py runs_worker`).
        """
        out: dict[str, float] = {}
        for process in [self.web, *self.others]:
            role = "worker" if "runs_worker" in process.args else "web"
            out[role] = out.get(role, 0.0) + tree_cpu_seconds(process.pid)
        return out

    def pids(self) -> list[int]:
        return [self.web.pid, *(p.pid for p in self.others)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return ANSI.sub("", path.read_text(errors="replace"))[-chars:]
    except OSError:
        return ""


def _wait_ready(url: str, processes: list[subprocess.Popen], logfile: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            for process in processes:
                if process.poll() is not None:
                    raise ServerError(f"{process.args!r} exited early:\n{_tail(logfile)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.2)
    raise ServerError(f"{url} not ready after {START_TIMEOUT:.0f}s:\n{_tail(logfile)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _spawn(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    logfile: Path,
    pass_fds: tuple[int, ...] = (),
) -> subprocess.Popen:
    with logfile.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
        )


def _our_env(var_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_ENV_PREFIXES)}
    # As scripts/serve runs the embedded default: local mode asked for explicitly, DEBUG off.
    env.update(
        DEBUG="false",
        SECRET_KEY="bench-secret-key",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DEERFLOW_AUTH_MODE="local",
        DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION="true",
        DEERFLOW_VAR_DIR=str(var_dir),
        DEERFLOW_LANGGRAPH_CONFIG=str(LANGGRAPH_CONFIG),
        # One bench user drives up to 64 clients; the peers have no per-user cap on active runs.
        DEERFLOW_MAX_ACTIVE_RUNS_PER_USER="0",
        **extra,
    )
    return env


def _migrate(env: dict[str, str], logfile: Path) -> None:
    with logfile.open("ab") as out:
        result = subprocess.run(
            [str(OUR_PYTHON), "manage.py", "migrate", "--noinput"],
            cwd=REPO_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise ServerError(f"manage.py migrate failed:\n{_tail(logfile)}")


def _daphne(
    env: dict[str, str], port: int, logfile: Path, listener: socket.socket | None = None
) -> subprocess.Popen:
    """One daphne process on HOST:port, or on an already listening socket it inherits."""
    where = ["--fd", str(listener.fileno())] if listener else ["-b", HOST, "-p", str(port)]
    server = ["-m", "deerflow_site.server"]  # daphne, with our Server (deerflow_site/server.py)
    command = [str(OUR_PYTHON), *server, *where, "deerflow_site.asgi:application"]
    fds = (listener.fileno(),) if listener else ()
    return _spawn(command, cwd=REPO_DIR, env=env, logfile=logfile, pass_fds=fds)


@contextlib.contextmanager
def our_server(
    workdir: Path,
    *,
    name: str,
    extra_env: dict[str, str],
    split_worker: bool = False,
    webs: int = 1,
    workers: int = 1,
) -> Iterator[Server]:
    """Our server as `name`: one daphne with the embedded worker, or (split_worker) `webs`
    daphne processes without one plus `workers` `manage.py runs_worker` processes."""
    var_dir = workdir / name
    var_dir.mkdir()
    logfile = workdir / f"{name}.log"
    env = _our_env(var_dir, extra_env)
    _migrate(env, logfile)
    port = free_port()
    processes: list[subprocess.Popen] = []
    try:
        if split_worker:
            web_env = {**env, "DEERFLOW_EMBEDDED_WORKER": "false"}
            logs = []
            if webs == 1:
                web = _daphne(web_env, port, logfile)
                processes.append(web)
                logs.append(logfile)
            else:
                port, listeners = shared_port_listeners(webs)
                for n, listener in enumerate(listeners):
                    web_log = workdir / f"{name}-web{n + 1}.log"
                    with listener:  # the daphne process keeps its inherited copy
                        processes.append(_daphne(web_env, port, web_log, listener))
                    logs.append(web_log)
                web = processes[0]
            for n in range(workers):
                worker_log = workdir / f"{name}-worker{n + 1}.log"
                worker = _spawn(
                    [str(OUR_PYTHON), "manage.py", "runs_worker"],
                    cwd=REPO_DIR, env=env, logfile=worker_log,
                )  # fmt: skip
                processes.append(worker)
                logs.append(worker_log)
        else:
            web = _daphne({**env, "DEERFLOW_EMBEDDED_WORKER": "true"}, port, logfile)
            processes.append(web)
            logs = [logfile]
        base_url = f"http://{HOST}:{port}/api"
        _wait_ready(f"{base_url}/ok", processes, logs[0])
        yield Server(
            name=name,
            description=_describe(name, split_worker, webs, workers),
            base_url=base_url,
            web=web,
            others=processes[1:],
            logs=logs,
        )
    finally:
        for process in reversed(processes):
            _stop(process)


def _describe(name: str, split_worker: bool, webs: int = 1, workers: int = 1) -> str:
    if name == "ours-sqlite":
        return "daphne, SQLite + in-memory channel layer + embedded worker (the default)"
    if split_worker:
        return (
            f"{webs} daphne web (no worker, one port) + {workers} manage.py runs_worker, "
            "PostgreSQL + Redis"
        )
    return "daphne with the embedded worker, PostgreSQL + Redis"


@contextlib.contextmanager
def postgres_and_redis(workdir: Path, *, name: str) -> Iterator[dict[str, str]]:
    """DATABASE_URL and REDIS_URL of a throwaway PostgreSQL + Redis (scripts/services.py).

    services.py runs a command while they live: ours is a Python that waits for its stdin to
    close, so that they live exactly as long as this context.
    """
    logfile = workdir / f"{name}-services.log"
    command = [
        str(OUR_PYTHON), str(REPO_DIR / "scripts" / "services.py"), "--workdir", str(workdir),
        "--", str(OUR_PYTHON), "-c", "import sys; sys.stdin.read()",
    ]  # fmt: skip
    with logfile.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO_DIR, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(urls) < 2:
            urls = dict(SERVICES_URL.findall(_tail(logfile, 100_000)))
            if process.poll() is not None:
                raise ServerError(f"scripts/services.py exited:\n{_tail(logfile)}")
            if time.monotonic() > deadline:
                raise ServerError(f"scripts/services.py gave no URLs:\n{_tail(logfile)}")
            time.sleep(0.2)
        yield urls
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(30)


def py_spy() -> str | None:
    """The py-spy binary, if installed in the reference venv or ours."""
    for venv in (REFERENCE_VENV, REPO_DIR / ".venv"):
        candidate = venv / "bin" / "py-spy"
        if candidate.exists():
            return str(candidate)
    return shutil.which("py-spy")
