"""Real daphne processes for the tests; the fixtures that start them are in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from scripts import cluster as cluster_script

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and daphne binding it

T = TypeVar("T")


def merge_env(base: dict[str, str], overrides: dict[str, str | None]) -> dict[str, str]:
    """base with overrides applied; an override of None removes the variable."""
    env = dict(base)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@dataclass
class LiveServer:
    """A daphne process serving deerflow_site.asgi:application on 127.0.0.1."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def api_url(self) -> str:
        return self.url + "/" + self.env.get("DEERFLOW_API_PREFIX", "/api").strip("/")

    def output(self) -> str:
        """What the process has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LiveServerFactory:
    """Starts daphne processes; stop_all() stops every one still running."""

    def __init__(self, base_env: dict[str, str], log_dir: Path) -> None:
        self._base_env = base_env
        self._log_dir = log_dir
        self._servers: list[LiveServer] = []

    def start(self, **env: str | None) -> LiveServer:
        """Start a server and wait until GET /api/ok answers 200.

        Keyword arguments set (or, with None, remove) environment variables of the server, e.g.
        `start(DEERFLOW_AUTH_MODE="local", DEBUG="true", DEERFLOW_EMBEDDED_WORKER="false")`.
        """
        server_env = merge_env(self._base_env, env)
        for attempt in range(1, START_ATTEMPTS + 1):
            server = self._spawn(server_env)
            error = _wait_until_ok(server)
            if error is None:
                return server
            server.stop()
            output = server.output()
            if "Address already in use" not in output or attempt == START_ATTEMPTS:
                break
        pytest.fail(
            f"live server {server.url} did not come up: {error}\n"
            f"--- daphne output ({server.log_path}) ---\n{output[-20000:]}"
        )

    def started(self) -> int:
        """How many servers this factory has started so far: a mark for `stop_started_since`."""
        return len(self._servers)

    def stop_started_since(self, mark: int) -> None:
        """Stop every server started after `mark` (from `started()`) that is still running."""
        for server in self._servers[mark:]:
            server.stop()

    def stop_all(self) -> None:
        self.stop_started_since(0)

    def _spawn(self, env: dict[str, str]) -> LiveServer:
        port = _free_port()
        log_path = self._log_dir / f"daphne-{port}.log"
        command = [sys.executable, "-m", "deerflow_site.server", "-b", "127.0.0.1", "-p", str(port)]
        process = spawn([*command, "deerflow_site.asgi:application"], env=env, log_path=log_path)
        server = LiveServer(f"http://127.0.0.1:{port}", process, log_path, env)
        self._servers.append(server)
        return server


def spawn(
    command: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    cwd: Path = REPO_ROOT,
    append: bool = False,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start `command` for a test: stdout and stderr to `log_path` (appended to it if `append`),
    no stdin, SIGTERM should pytest die without its teardown, in a session (and process group)
    of its own if `new_session`. The test or its fixture stops it: tests/process_guard.py fails
    a test that leaves a process running."""
    # The child has a copy of the file's descriptor: this process's is closed on return.
    with log_path.open("ab" if append else "wb") as log_file:
        return cluster_script.start(command, env, output=log_file, cwd=cwd, new_session=new_session)


@dataclass
class CommandProcess:
    """A `manage.py` command (a `runs_worker`, ...) running for a test, and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """The last 10,000 characters it wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace")[-10000:]

    def owns(self, run: Any) -> bool:
        """Whether this process claimed the run (worker ids are `host:pid:random`)."""
        return run.worker_id.startswith(f"{socket.gethostname()}:{self.process.pid}:")

    def kill(self) -> None:
        """SIGKILL, as a machine's crash ends it, and wait until it has ended."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class CommandStarter:
    """Starts `manage.py` commands on the test database: `start("runs_worker", **env)`;
    `kill_all()` ends every one still running (a function-scoped fixture's teardown)."""

    def __init__(self, base_env: dict[str, str], log_dir: Path) -> None:
        self._base_env = base_env
        self._log_dir = log_dir
        self.started: list[CommandProcess] = []

    def start(self, *args: str, **env: str | None) -> CommandProcess:
        log_path = self._log_dir / f"{args[0]}-{len(self.started)}.log"
        command = [sys.executable, "manage.py", *args]
        process = spawn(command, env=merge_env(self._base_env, env), log_path=log_path)
        self.started.append(CommandProcess(process, log_path))
        return self.started[-1]

    def kill_all(self) -> None:
        for command in self.started:
            command.kill()


class StartWatch:
    """Whether to give up on processes (each with its children) that have not done a thing yet.

    By the work they did, not by the clock: on a loaded two-core machine (CI, or helpers sharing
    one) importing Django and LangGraph can take minutes of wall time for a few seconds of CPU,
    and a fixed wall-clock bound failed processes that were starting, only slowly. Given up on:
    processes that used `cpu_budget` seconds of CPU since the watch began (a normal start uses a
    few), or none for `stall_seconds` (blocked, not starved: a starved one still gets some), or
    `ceiling_seconds` after it began whatever they did.

    `pids` are the processes watched; without any, every process this one has started (a test's
    servers and workers), as they come and go. The CPU of one that ended still counts.
    """

    def __init__(
        self,
        *pids: int,
        cpu_budget: float = 60.0,
        stall_seconds: float = 60.0,
        ceiling_seconds: float = 600.0,
    ) -> None:
        self._pids = pids
        self._cpu_budget = cpu_budget
        self._stall_seconds = stall_seconds
        self._started = self._progressed = time.monotonic()
        self._ceiling = self._started + ceiling_seconds
        self._seen: dict[tuple[int, float], float] = {}  # CPU seconds of each process seen
        self._initial = self._cpu = self._cpu_seconds()

    def gave_up(self) -> str | None:
        """Why the wait has failed (a sentence), or None while the processes may still get on."""
        now = time.monotonic()
        cpu = self._cpu_seconds()
        if cpu > self._cpu:
            self._cpu, self._progressed = cpu, now
        used = self._cpu - self._initial
        waited = f"after {now - self._started:.0f}s ({used:.1f}s of CPU)"
        if used > self._cpu_budget:
            return f"used over {self._cpu_budget:.0f}s of CPU {waited}"
        if now - self._progressed > self._stall_seconds:
            return f"used no CPU for {self._stall_seconds:.0f}s {waited}"
        if now > self._ceiling:
            return f"not up {waited}"
        return None

    def _cpu_seconds(self) -> float:
        tree: list[psutil.Process] = []
        for pid in self._pids or (os.getpid(),):
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                tree += [*([process] if self._pids else []), *process.children(recursive=True)]
        for member in tree:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                self._seen[(member.pid, member.create_time())] = times.user + times.system
        return sum(self._seen.values())


def wait_until(
    predicate: Callable[[], T],
    what: str,
    watch: StartWatch | None = None,
    log: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate()` every 50 ms until it is truthy, and return it; fail (AssertionError
    naming `what`, with `log()` if given) once `watch` gives up: by default a StartWatch over
    every process this one has started."""
    watch = watch or StartWatch()
    while not (value := predicate()):
        if (reason := watch.gave_up()) is not None:
            raise AssertionError(f"waited in vain for {what}: {reason}{_log_text(log)}")
        time.sleep(0.05)
    return value


async def watched(
    awaitable: Awaitable[T],
    what: str,
    watch: StartWatch | None = None,
    log: Callable[[], str] | None = None,
) -> T:
    """`await awaitable` while `watch` (see `wait_until`) does not give up on the processes it
    depends on; once it does, cancel it and fail naming `what`."""
    watch = watch or StartWatch()
    task = asyncio.ensure_future(awaitable)
    try:
        while not (await asyncio.wait({task}, timeout=0.1))[0]:
            if (reason := watch.gave_up()) is not None:
                raise AssertionError(f"waited in vain for {what}: {reason}{_log_text(log)}")
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def poll_until(
    check: Callable[[], Awaitable[T]],
    what: str,
    watch: StartWatch | None = None,
    log: Callable[[], str] | None = None,
) -> T:
    """`await check()` every 50 ms until it is truthy, and return it: `wait_until` for async
    checks (a row another process writes: there is no event to await)."""

    async def checked() -> T:
        while not (value := await check()):  # noqa: ASYNC110 - other processes' work
            await asyncio.sleep(0.05)
        return value

    return await watched(checked(), what, watch, log)


def _log_text(log: Callable[[], str] | None) -> str:
    return f"\n--- log ---\n{log()}" if log else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_ok(server: LiveServer) -> str | None:
    """Poll GET {api_url}/ok until it answers 200 (None) or the process is given up on (what
    went wrong; see StartWatch)."""
    watch = StartWatch(server.process.pid)
    error = "no answer"
    # A probe waits for its answer: a server that has started but is starved answers slowly,
    # and probes abandoned after 2 s each (ReadTimeout) never saw it up while they piled up.
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(30.0, connect=2.0)) as client:
        while (gave_up := watch.gave_up()) is None:
            if server.process.poll() is not None:
                return f"daphne exited with code {server.process.returncode}"
            try:
                response = client.get(server.api_url + "/ok")
            except httpx.TransportError as exc:
                error = repr(exc)
            else:
                if response.status_code == 200:
                    return None
                error = f"GET /ok answered {response.status_code}: {response.text[:500]}"
            time.sleep(0.1)
    return f"{error}: {gave_up}"
