"""Per create+wait run, in-process (bench/inprocess.py's load): how often the run's code looks up
its database connection, converts a statement's placeholders with Django's regular expression,
and builds a database connection wrapper.

    .venv/bin/python bench/db_counts.py [--concurrency 32] [--runs 320]

`connections[alias]` (and every attribute of the `connection` proxy) goes through asgiref's
`Local`, a few µs each; the conversion is SQLite's (`%s` to `?`), 7-44 µs per statement on the
shared machine; a wrapper is built when code on an event loop looks a connection up in a task
whose context has none for that thread. Counts do not move with the machine's load, so they
compare two commits where CPU times cannot.
"""

import sys
from collections import Counter
from typing import Any

import inprocess


def main() -> None:
    args = inprocess.command_line(__doc__, runs=320)
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.sqlite3 import base as sqlite_base
    from django.utils.connection import BaseConnectionHandler

    counts: Counter[str] = Counter()
    counting = [False]

    def counted(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if counting[0]:
                counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    BaseConnectionHandler.__getitem__ = counted("lookup", BaseConnectionHandler.__getitem__)
    BaseDatabaseWrapper.__init__ = counted("wrapper built", BaseDatabaseWrapper.__init__)
    regex = sqlite_base.FORMAT_QMARK_REGEX
    sqlite_base.FORMAT_QMARK_REGEX = type(
        "Counted", (), {"sub": staticmethod(counted("regex conversion", regex.sub))}
    )()
    inprocess.measure_counting(args.concurrency, args.runs, counting)
    for name in ("lookup", "regex conversion", "wrapper built"):
        print(f"{name}: {counts[name] / args.runs:.2f} per run")


if __name__ == "__main__":
    sys.exit(main())
