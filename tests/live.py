"""Real daphne processes for the tests; the fixtures that start them are in conftest.py."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and daphne binding it


def merge_env(base: dict[str, str], overrides: dict[str, str | None]) -> dict[str, str]:
    """base with overrides applied; an override of None removes the variable."""
    env = dict(base)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def die_with_parent() -> None:
    """preexec_fn for child processes: SIGTERM them if pytest dies without its teardown."""
    with contextlib.suppress(OSError, AttributeError):  # Linux only
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [*command, "deerflow_site.asgi:application"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        server = LiveServer(f"http://127.0.0.1:{port}", process, log_path, env)
        self._servers.append(server)
        return server


class StartWatch:
    """Whether to give up on a process (and its children) that has not come up yet.

    By the work it did, not by the clock: on a loaded two-core machine (CI, or helpers sharing
    one) importing Django and LangGraph can take minutes of wall time for a few seconds of CPU,
    and a fixed wall-clock bound failed servers that were starting, only slowly. Given up on: a
    process that used `cpu_budget` seconds of CPU (a normal start uses a few), or none for
    `stall_seconds` (blocked, not starved: a starved one still gets some), or that started
    `ceiling_seconds` ago whatever it did.
    """

    def __init__(
        self,
        pid: int,
        *,
        cpu_budget: float = 60.0,
        stall_seconds: float = 60.0,
        ceiling_seconds: float = 600.0,
    ) -> None:
        self._pid = pid
        self._cpu_budget = cpu_budget
        self._stall_seconds = stall_seconds
        self._started = self._progressed = time.monotonic()
        self._ceiling = self._started + ceiling_seconds
        self._cpu = 0.0

    def gave_up(self) -> str | None:
        """Why the start has failed (a sentence), or None while it may still come up."""
        now = time.monotonic()
        cpu = self._cpu_seconds()
        if cpu > self._cpu:
            self._cpu, self._progressed = cpu, now
        waited = f"after {now - self._started:.0f}s ({self._cpu:.1f}s of CPU)"
        if self._cpu > self._cpu_budget:
            return f"used over {self._cpu_budget:.0f}s of CPU {waited}"
        if now - self._progressed > self._stall_seconds:
            return f"used no CPU for {self._stall_seconds:.0f}s {waited}"
        if now > self._ceiling:
            return f"not up {waited}"
        return None

    def _cpu_seconds(self) -> float:
        try:
            process = psutil.Process(self._pid)
            tree = [process, *process.children(recursive=True)]
        except psutil.Error:
            return self._cpu
        total = 0.0
        for member in tree:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                total += times.user + times.system
        return total


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
