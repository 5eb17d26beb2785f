"""`scripts/cluster` for the tests: the scale-out topology started the way operators start it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from tests.live import StartWatch, merge_env, spawn

#: PostgreSQL and Redis: what processes need to share runs (scripts/test's PostgreSQL phase).
ON_PRODUCTION_STACK = bool(settings.REDIS_URL) and settings.DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
)

STOP_SECONDS = 60.0
_WEB_LINE = re.compile(r"^web (\d+) (\S+) pid (\d+)$", re.MULTILINE)
_WORKER_LINE = re.compile(r"^worker (\d+) pid (\d+)$", re.MULTILINE)


@dataclass
class Cluster:
    """A running `scripts/cluster.py`: its web URLs and worker pids, as it printed them."""

    process: subprocess.Popen[bytes]
    log_path: Path
    web_urls: list[str] = field(default_factory=list)
    worker_pids: list[int] = field(default_factory=list)
    web_pids: list[int] = field(default_factory=list)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as an operator stops it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no free consecutive ports")


def start_cluster(
    *, env: dict[str, str], log_dir: Path, web: int, workers: int, **extra_env: str
) -> Cluster:
    """Start `scripts/cluster.py --web N --workers M` on the given database and Redis and wait
    for `cluster ready` (fails with its output when it does not come)."""
    log_path = log_dir / f"cluster-{len(os.listdir(log_dir))}.log"
    port = consecutive_free_ports(web)
    command = [sys.executable, "scripts/cluster.py", "--web", str(web), "--workers", str(workers)]
    process = spawn(
        [*command, "--port", str(port)], env=merge_env(env, dict(extra_env)), log_path=log_path
    )
    cluster = Cluster(process=process, log_path=log_path)
    # Every process of the cluster imports Django and LangGraph: their CPU together is the budget.
    watch = StartWatch(process.pid, cpu_budget=120.0)
    while "cluster ready" not in cluster.output():
        if process.poll() is not None or (gave_up := watch.gave_up()) is not None:
            cluster.stop()
            reason = "it exited" if process.poll() is not None else gave_up
            raise AssertionError(
                f"scripts/cluster did not start ({reason}):\n{cluster.output()[-20000:]}"
            )
        time.sleep(0.1)
    output = cluster.output()
    cluster.web_urls = [url for _, url, _ in _WEB_LINE.findall(output)]
    cluster.web_pids = [int(pid) for _, _, pid in _WEB_LINE.findall(output)]
    cluster.worker_pids = [int(pid) for _, pid in _WORKER_LINE.findall(output)]
    return cluster


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))
