"""Per create+wait run, in-process (bench/inprocess.py's load): how runs start (directly, or
queued and claimed), and the SQL statements and transactions each run costs.

    .venv/bin/python bench/run_paths.py [--concurrency 32] [--runs 640]

Counts do not move with the machine's load, so they compare two commits where CPU times cannot.
"""

from collections import Counter
from typing import Any

import inprocess


def main() -> None:
    args = inprocess.command_line(__doc__, runs=640)
    from django.db.backends.signals import connection_created

    from runs.engine import direct, queue, worker

    counts: Counter[str] = Counter()
    counting = [False]

    def counted(name: str, function: Any, *, result: Any = None) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            value = function(*a, **kw)
            if counting[0]:
                counts[name] += 1
                if result is not None:
                    for key, n in result(value).items():
                        counts[key] += n
            return value

        return wrapper

    direct.DirectStart.hand_off = counted("direct start", direct.DirectStart.hand_off)
    direct.DirectStart.release = counted("direct slot released", direct.DirectStart.release)
    direct.reserve_direct_start = counted(
        "admission", direct.reserve_direct_start, result=lambda d: {"no slot": d is None}
    )
    import runs.admission as admission

    admission.reserve_direct_start = direct.reserve_direct_start
    queue.claim_runs = counted(
        "claim transaction", queue.claim_runs, result=lambda c: {"claimed": len(c.runs)}
    )
    queue.idle = counted("idle poll", queue.idle)
    worker.queue = queue

    def traced(sender: Any, connection: Any, **kwargs: Any) -> None:
        def trace(statement: str) -> None:
            if counting[0]:
                word = statement.split(None, 1)[0].upper()
                counts["statement"] += 1
                if word in ("BEGIN", "COMMIT", "ROLLBACK"):
                    counts[word.lower()] += 1

        connection.connection.set_trace_callback(trace)

    connection_created.connect(traced, weak=False)
    inprocess.measure_counting(args.concurrency, args.runs, counting)
    for name, count in sorted(counts.items()):
        print(f"{count / args.runs:8.3f}  {name}")


if __name__ == "__main__":
    main()
