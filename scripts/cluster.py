"""A small supervisor for the scale-out topology (what `scripts/cluster` runs).

    .venv/bin/python scripts/cluster.py [--web N] [--workers M] [--port P] [--host H]
                                        [--concurrency C]

Migrates once, then starts N daphne web processes (ports P, P+1, ...; with
DEERFLOW_EMBEDDED_WORKER=false) and M `manage.py runs_worker` processes, all with this
environment (DATABASE_URL, REDIS_URL, SECRET_KEY, ...). Once every web process answers
GET /api/ok it prints one line per process:

    web 1 http://127.0.0.1:8000 pid 1234
    worker 1 pid 1240

then `cluster ready`. A process that exits on its own is restarted (`worker 1 pid 1250
(restarted)`), up to MAX_RESTARTS times. On Ctrl-C or SIGTERM, or past those restarts, it sends
SIGTERM to all of them (workers finish their runs for up to DEERFLOW_WORKER_SHUTDOWN_SECONDS),
waits, kills what is left and exits: 0 when it was asked to stop, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 90.0  # seconds: a process imports Django and LangGraph and compiles the graphs
POLL_SECONDS = 0.2
#: Restarts of one process before the supervisor gives up and stops them all.
MAX_RESTARTS = 5


def log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def die_with_parent() -> None:
    """preexec_fn: the children get SIGTERM if their parent (this supervisor, a test run) is
    killed outright (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    url: str = ""
    restarts: int = 0

    def describe(self) -> str:
        where = f" {self.url}" if self.url else ""
        return f"{self.name}{where} pid {self.process.pid}"

    def restart(self) -> None:
        self.process = start(self.command, self.env, new_session=True)
        self.restarts += 1


def start(
    command: list[str],
    env: dict[str, str],
    *,
    output: IO[bytes] | None = None,
    cwd: Path = REPO_ROOT,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `command` with `env` in `cwd` and no stdin; its stdout and stderr go to `output` (a
    file open for writing), else to this process's. It gets SIGTERM should this process die
    outright (die_with_parent); with `new_session`, it has a session (and process group) of its
    own. tests/live.spawn starts the tests' processes with it too."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=None if output is None else subprocess.STDOUT,
        preexec_fn=die_with_parent,
        start_new_session=new_session,
    )


def spawn(name: str, command: list[str], env: dict[str, str], url: str = "") -> Child:
    # Their own session: a Ctrl-C reaches only the supervisor, which stops them in order.
    process = start(command, env, new_session=True)
    return Child(name=name, command=command, env=env, process=process, url=url)


def supervise(children: list[Child]) -> str:
    """Restart a process that exits (a crash, an OOM kill), up to MAX_RESTARTS times each;
    returns why it gave up."""
    while True:
        for child in children:
            if child.process.poll() is None:
                continue
            code = child.process.returncode
            if child.restarts >= MAX_RESTARTS:
                return f"{child.name} exited with code {code} after {child.restarts} restarts"
            log(f"{child.name} exited with code {code}: restarting it")
            child.restart()
            print(f"{child.describe()} (restarted)", flush=True)
        time.sleep(POLL_SECONDS)


def answers_ok(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(webs: list[Child], children: list[Child], api_prefix: str) -> str | None:
    """None once every web process answers GET /ok, else what went wrong."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(webs)
    while waiting:
        for child in children:
            if child.process.poll() is not None:
                return f"{child.name} exited with code {child.process.returncode}"
        waiting = [web for web in waiting if not answers_ok(f"{web.url}{api_prefix}/ok")]
        if time.monotonic() > deadline:
            names = ", ".join(web.name for web in waiting)
            return f"{names} did not answer within {START_TIMEOUT:.0f}s"
        time.sleep(POLL_SECONDS)
    return None


def stop_all(children: list[Child], grace: float) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{child.name} did not stop within {grace:.0f}s: killing it")
            child.process.kill()
            child.process.wait()


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop the cluster."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web", type=int, default=2, help="daphne web processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="runs_worker processes (default 2)")
    parser.add_argument("--port", type=int, default=8000, help="first web port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--concurrency", type=int, help="runs per worker (default DEERFLOW_WORKER_CONCURRENCY)"
    )
    args = parser.parse_args()
    if args.web < 1 or args.workers < 1:
        parser.error("--web and --workers must be at least 1")
    database_url = os.environ.get("DATABASE_URL", "")
    if not (database_url.startswith("postgres") and os.environ.get("REDIS_URL")):
        parser.error("needs DATABASE_URL (postgres://...) and REDIS_URL: see scripts/cluster")

    def request_stop(signum: int, _frame: object) -> None:
        raise Stop()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    web_env = {**env, "DEERFLOW_EMBEDDED_WORKER": "false"}
    api_prefix = "/" + env.get("DEERFLOW_API_PREFIX", "/api").strip("/")
    grace = float(env.get("DEERFLOW_WORKER_SHUTDOWN_SECONDS", "10")) + 10
    python = sys.executable
    children: list[Child] = []
    stopped = False
    try:
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=REPO_ROOT, check=True)
        webs = []
        for index in range(args.web):
            port = args.port + index
            command = [python, "-m", "deerflow_site.server", "-b", args.host, "-p", str(port)]
            if env.get("DEERFLOW_LOG_FORMAT") == "json":
                command += ["--verbosity", "0"]  # its access log is plain text: JSON lines only
            url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"
            command.append("deerflow_site.asgi:application")
            webs.append(spawn(f"web {index + 1}", command, web_env, url))
        children.extend(webs)
        worker_command = [python, "manage.py", "runs_worker"]
        if args.concurrency:
            worker_command += ["--concurrency", str(args.concurrency)]
        for index in range(args.workers):
            children.append(spawn(f"worker {index + 1}", worker_command, env))
        problem = wait_until_ready(webs, children, api_prefix)
        if problem:
            log(problem)
            return 1
        for child in children:
            print(child.describe(), flush=True)
        print("cluster ready (Ctrl-C stops it)", flush=True)
        log(f"{supervise(children)}: stopping")
        return 1
    except Stop:
        stopped = True
        log("stopping")
        return 0
    finally:
        with contextlib.suppress(Stop):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(children, grace)
        if stopped:
            log("stopped")


if __name__ == "__main__":
    sys.exit(main())
