"""A create+wait run's CPU by part, from `bench/run.py --profile`'s py-spy `--gil` raw files.

    .venv/bin/python bench/profile_parts.py LABEL=CPU_MS_PER_RUN:FILE[,FILE] ... [--leaves 8]

Each sample (the GIL holder's stack) goes to one part: walking the stack from its root, the
deepest frame that names a part decides, except that a sticky part (the graph's run, the saver's
thread, admission, the run's end, the journal, the queue, the floor's record writes) keeps
everything that runs under it. Each part's share of the samples times the server's measured CPU
per run (`server_cpu_ms_per_run` of the same run) gives ms per run, so that ours and the floors
(`floor`, `floor-durable`, `floor-split`) compare part by part; on the split layouts, the
Redis and PostgreSQL clients' frames outside a sticky part are parts of their own.
`--leaves N`: the N lines where the samples end.
"""

import argparse
from collections import Counter

STICKY = [
    ("graph: LangGraph's astream (the run's task)", ("Pregel.astream (",)),
    (
        "checkpoint saver's thread",
        (
            "(runs/engine/serial_saver.py",
            "(runs/engine/sqlite_saver.py",
            "(runs/engine/postgres_saver.py",
        ),
    ),
    ("admission hop (`_admit_sync`)", ("_admit_sync (runs/stream_views.py",)),
    ("the run's end (`finish_run`)", ("(runs/engine/finish.py",)),
    ("journal", ("(runs/journal/", "(runs/engine/journal.py")),
    ("queue: claim, idle poll", ("(runs/engine/queue.py", "_claim (runs/engine/worker.py")),
    ("floor-durable's record writes", ("_write (floor_app.py", "_write (bench/floor_app.py")),
]
PLAIN = [
    ("daphne, twisted: HTTP in and out", ("(twisted/", "(daphne/", "(deerflow_site/server.py")),
    ("asyncio's loop", ("(asyncio/", "(selectors.py")),
    (
        "Django's handler, middleware, URLs, response",
        (
            "(django/",
            "(deerflow_site/asgi.py",
            "(deerflow_site/middleware.py",
            "(corsheaders/",
            "(asgiref/",
            "(rest_framework/",
        ),
    ),
    (
        "the view on the loop (wait, answer)",
        (
            "(runs/stream_views.py",
            "(runs/join_views.py",
            "(deerflow_site/api/",
            "(floor_app.py",
            "(bench/floor_app.py",
            "(floor_split.py",
            "(bench/floor_split.py",
            "(runs/sse/",
            "(runs/admission.py",
            "(deerflow_site/streaming.py",
        ),
    ),
    ("worker: executor, publisher, bus", ("(runs/engine/", "(runs/")),
    (
        "Redis client: channels_redis, redis-py (split layouts)",
        ("(channels_redis/", "(redis/", "(runs/engine/redis_layer.py"),
    ),
    ("PostgreSQL client: psycopg (split layouts)", ("(psycopg/", "(psycopg_pool/")),
    (
        "thread hand-offs: bridge, pools, inbox",
        (
            "(deerflow_site/bridge",
            "(concurrent/",
            "(threading.py",
            "(deerflow_site/loop_inbox.py",
            "(queue.py",
        ),
    ),
]
PARTS = [name for name, _ in STICKY + PLAIN] + ["other (no part named; no Python frame)"]


def part_of(stack: str) -> str:
    """The part a sample's stack (`frame;frame;...`, root first) belongs to."""
    current = PARTS[-1]
    for frame in stack.split(";"):
        for name, marks in STICKY:
            if any(mark in frame for mark in marks):
                return name
        for name, marks in PLAIN:
            if any(mark in frame for mark in marks):
                current = name
                break
    return current


def read(files: list[str]) -> tuple[Counter[str], Counter[str]]:
    """Samples per part and per leaf line, over `files`."""
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for path in files:
        with open(path) as lines:
            for line in lines:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if count.isdigit():
                    parts[part_of(stack)] += int(count)
                    leaves[stack.rpartition(";")[2] or "(no Python frame)"] += int(count)
    return parts, leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="+", help="LABEL=CPU_MS_PER_RUN:FILE[,FILE]")
    parser.add_argument("--leaves", type=int, default=0)
    args = parser.parse_args()
    columns = []
    for spec in args.servers:
        label, _, rest = spec.partition("=")
        cpu, _, files = rest.partition(":")
        columns.append((label, float(cpu), *read(files.split(","))))
    print("| part of a run, ms per run (share) | " + " | ".join(c[0] for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for part in PARTS:
        cells = []
        for _, cpu, parts, _ in columns:
            total = sum(parts.values())
            cells.append(f"{cpu * parts[part] / total:.2f} ({100 * parts[part] / total:.0f} %)")
        print(f"| {part} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"{cpu:.2f} ({sum(parts.values())})" for _, cpu, parts, _ in columns)
    print(f"| server CPU ms per run (samples) | {totals} |")
    for label, cpu, parts, leaves in columns if args.leaves else []:
        total = sum(parts.values())
        print(f"\n{label}: the lines where samples end")
        for leaf, samples in leaves.most_common(args.leaves):
            print(f"  {cpu * samples / total:5.2f} ms  {100 * samples / total:4.1f} %  {leaf}")


if __name__ == "__main__":
    main()
