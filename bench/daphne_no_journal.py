"""daphne serving our application with the run journal switched off, for bench/journal.py only.

    .venv/bin/python bench/daphne_no_journal.py -b 127.0.0.1 -p PORT deerflow_site.asgi:application

The executor's journal writer and recorder are replaced by stand-ins that record nothing, and the
final write of the journal with the run's end is skipped: what remains is the server without a
journal, to measure what the journal costs. Never for production (nothing else imports this).
"""

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class NoJournalWriter:
    def __init__(self, run: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def add(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def close(self) -> Any:
        from runs.journal.store import JournalBatch

        return JournalBatch()

    def abort(self) -> None:
        pass


def switch_off_the_journal() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "deerflow_site.settings")
    django.setup()
    from langchain_core.callbacks import BaseCallbackHandler

    from runs.engine import executor, finish

    class NoRunJournal(BaseCallbackHandler):
        def __init__(self, writer: Any) -> None:
            pass

        def record_start(self, run: Any) -> None:
            pass

    executor.JournalWriter = NoJournalWriter
    executor.RunJournal = NoRunJournal
    finish.record_batch = lambda **kwargs: []


if __name__ == "__main__":
    switch_off_the_journal()
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(sys.argv[1:])
