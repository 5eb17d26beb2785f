"""What happens on the server between a request and its bytes leaving: the real server (daphne,
the embedded default), instrumented, at concurrency 1.

    .venv/bin/python bench/first_bytes.py [--requests 200]

The server runs in a child process with counting wrappers: from the moment daphne has the whole
request (`WebRequest.process`) to each write of the response to its socket (twisted's
`writeSomeData`), the event loop's iterations (`_run_once`: a look at the sockets each), the
callbacks and task steps it ran, the wake-ups from other threads (`LoopInbox._run_all`: the
results of thread hops, hand-offs), and the wall time. Three requests, one at a time, each on
one thread made beforehand: `POST /threads` (its answer), create+stream (the stream's first
write: status line, headers and `metadata`) and create+wait (its last write: the answer and the
body's end), with the bench's echo graph. Medians per request; the counts do not move with the
machine's load, the µs do.
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
#: Requests of each kind not counted (the server warming up).
SKIP = 10
sys.path.insert(0, str(BENCH_DIR))


def serve(port: int, log_path: str) -> None:
    """The server, instrumented (in the child process)."""
    from asyncio import base_events, events

    sys.path.insert(0, str(BENCH_DIR.parent))
    from daphne.http_protocol import WebRequest
    from twisted.internet import tcp

    from deerflow_site.server import StreamServerCommand  # daphne installs its reactor first

    counts = {"iterations": 0, "callbacks": 0, "wake_ups": 0}
    log = open(log_path, "a", buffering=1)  # for the process's life
    seq = [0]

    run_once = base_events.BaseEventLoop._run_once

    def counted_run_once(self: Any) -> None:
        counts["iterations"] += 1
        run_once(self)

    base_events.BaseEventLoop._run_once = counted_run_once
    handle_run = events.Handle._run

    def counted_handle_run(self: Any) -> None:
        counts["callbacks"] += 1
        handle_run(self)

    events.Handle._run = counted_handle_run

    from deerflow_site.loop_inbox import LoopInbox

    run_all = LoopInbox._run_all

    def counted_run_all(self: Any) -> None:
        counts["wake_ups"] += 1
        run_all(self)

    LoopInbox._run_all = counted_run_all

    process = WebRequest.process

    def marked_process(self: Any) -> None:
        seq[0] += 1
        self.channel.transport._first_bytes = {
            "seq": seq[0],
            "path": self.path.decode(),
            "at": time.perf_counter(),
            **counts,
        }
        process(self)

    WebRequest.process = marked_process
    write_some = tcp.Connection.writeSomeData

    def noted_write(self: Any, data: bytes) -> Any:
        mark = getattr(self, "_first_bytes", None)
        if mark is not None:
            row = {k: counts[k] - mark[k] for k in counts}
            row.update(
                seq=mark["seq"],
                path=mark["path"],
                us=round((time.perf_counter() - mark["at"]) * 1e6),
            )
            log.write(json.dumps(row) + "\n")
        return write_some(self, data)

    tcp.Connection.writeSomeData = noted_write

    sys.argv = ["daphne", "-b", "127.0.0.1", "-p", str(port), "deerflow_site.asgi:application"]
    StreamServerCommand.entrypoint()


async def drive(base_url: str, requests: int) -> None:
    import httpx

    body = {"assistant_id": "bench", "input": {"text": "x"}}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as http:
        thread_id = (await http.post("/threads", json={})).json()["thread_id"]
        for _ in range(requests):
            await http.post("/threads", json={})
            async with http.stream(
                "POST",
                f"/threads/{thread_id}/runs/stream",
                json={**body, "stream_mode": ["values"]},
            ) as response:
                async for _ in response.aiter_raw():
                    pass
            response = await http.post(f"/threads/{thread_id}/runs/wait", json=body)
            assert response.status_code == 200, response.text


def summarize(log_path: Path, skip: int) -> dict[str, dict[str, float]]:
    writes: dict[int, list[dict[str, Any]]] = {}
    for line in log_path.read_text().splitlines():
        row = json.loads(line)
        writes.setdefault(row["seq"], []).append(row)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for rows in writes.values():
        path = rows[0]["path"]
        if path.endswith("/runs/stream"):
            kinds.setdefault("create+stream, first write", []).append(rows[0])
        elif path.endswith("/runs/wait"):
            kinds.setdefault("create+wait, last write", []).append(rows[-1])
        elif path.endswith("/threads"):
            kinds.setdefault("POST /threads, first write", []).append(rows[0])
    return {
        kind: {
            key: statistics.median(row[key] for row in rows[skip:])
            for key in ("iterations", "callbacks", "wake_ups", "us")
        }
        for kind, rows in kinds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.log)
        return
    import servers

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        var_dir = workdir / "var"
        var_dir.mkdir()
        env = servers._our_env(var_dir, {"DEERFLOW_EMBEDDED_WORKER": "true"})
        logfile = workdir / "server.log"
        servers._migrate(env, logfile)
        port = servers.free_port()
        counts_log = workdir / "writes.jsonl"
        command = [str(servers.OUR_PYTHON), str(Path(__file__).resolve()), "--serve", str(port)]
        server = servers._spawn(
            [*command, "--log", str(counts_log)], cwd=servers.REPO_DIR, env=env, logfile=logfile
        )
        try:
            base_url = f"http://127.0.0.1:{port}/api"
            servers._wait_ready(f"{base_url}/ok", [server], logfile)
            asyncio.run(drive(base_url, args.requests))
        finally:
            servers._stop(server)
        if not counts_log.exists():
            sys.exit(f"no writes noted; the server's log:\n{logfile.read_text()[-3000:]}")
        result = summarize(counts_log, skip=SKIP)
    commit = subprocess.run(
        ["git", "-C", str(servers.REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(f"commit {commit}, medians per request after {SKIP} not counted:")
    for kind, values in result.items():
        print(
            f"  {kind:28} iterations {values['iterations']:5.1f}  callbacks "
            f"{values['callbacks']:6.1f}  wake-ups {values['wake_ups']:4.1f}  "
            f"{values['us']:8.0f} µs"
        )


if __name__ == "__main__":
    main()
