"""Process-tree measurements (CPU, RSS) and the shared listening port of a multi-process server."""

from __future__ import annotations

import contextlib
import socket

import psutil

HOST = "127.0.0.1"


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


def shared_port_listeners(count: int) -> tuple[int, list[socket.socket]]:
    """`count` listening sockets on one loopback port (SO_REUSEPORT), one per web process.

    The kernel spreads new connections over them, as over the processes of a pre-fork server.
    """
    listeners: list[socket.socket] = []
    port = 0
    try:
        for _ in range(count):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((HOST, port))
            port = listener.getsockname()[1]
            listener.listen(1024)
            listener.set_inheritable(True)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return port, listeners
