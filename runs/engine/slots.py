"""A worker's slots: its running runs plus the reserved ones (a claim in progress, a direct
start being admitted on another thread) never exceed its `concurrency`, counted under one lock.

`RunWorker` takes these methods; admission reserves a slot from its own thread
(`runs.engine.direct`), the worker's claim loop reserves every free slot while it claims.
"""

import asyncio
import contextlib
import functools
import threading
from typing import Any

from deerflow_site.loop_inbox import LoopInbox
from runs.models import Run


class Slots:
    """The slot accounting of `RunWorker` (its `_executions`, `_begin` and `_wake`)."""

    concurrency: int
    _executions: dict[Any, Any]
    _wake: asyncio.Event

    def _init_slots(self) -> None:
        self._slots = threading.Lock()
        self._reserved = 0
        self._accepting = False  # set once the worker runs, cleared when it stops
        self._backlog = False  # the last claim filled every free slot
        self._inbox: LoopInbox | None = None  # calls onto the worker's loop, set when it runs
        # The last idle poll found no pending run, and none may have been queued since: a run's
        # end then needs no look at the queue (`_queue_events` counts the signs of one queued).
        self._queue_empty = False
        self._queue_events = 0

    def _begin(self, runs: list[Run]) -> None:
        raise NotImplementedError

    def reserve_slot(self) -> bool:
        """Reserve one slot for a run about to start directly (`runs.engine.direct`); False
        when none is free, the worker is not taking runs, or its last claim left runs waiting
        (admission would find them in the queue, and send its run there). Thread-safe."""
        with self._slots:
            if not self._accepting or self._backlog:
                return False
            if len(self._executions) + self._reserved >= self.concurrency:
                return False
            self._reserved += 1
            return True

    def release_slot(self) -> None:
        """Give back a slot reserved with `reserve_slot` (the run went to the queue).
        Thread-safe."""
        with self._slots:
            self._reserved -= 1
            self._note_queued()
        self._call_soon(self._wake.set)

    def wake_if_free(self) -> None:
        """A pending run was queued: wake the claim loop when a slot is free. Thread-safe; when
        the worker is not running or is full, it looks at the queue again as each of its runs
        ends."""
        with self._slots:
            self._note_queued()
            free = self._accepting and (len(self._executions) + self._reserved < self.concurrency)
        if free and self._inbox is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                self._inbox.call_soon(self._wake.set)

    def _note_queued(self) -> None:
        """A run may have been queued (under `_slots`): the next run's end looks at the queue."""
        self._queue_events += 1
        self._queue_empty = False

    def note_queue_polled(self, *, empty: bool, events_before: int) -> None:
        """An idle poll read the queue: `empty` when no run was pending; `events_before` is
        `_queue_events` as it was before the read (a run queued during it keeps the queue
        looked at)."""
        with self._slots:
            self._queue_empty = empty and self._queue_events == events_before

    def start_reserved(self, run: Run) -> None:
        """Execute a committed running run in the slot reserved for it. Thread-safe; raises
        RuntimeError when the worker's loop is gone (the run's lease then expires)."""
        self._call_soon(self._begin_reserved, [run], reserved=1)

    def _call_soon(self, callback: Any, *args: Any, **kwargs: Any) -> None:
        if self._inbox is None:
            raise RuntimeError("the worker is not running")
        self._inbox.call_soon(functools.partial(callback, *args, **kwargs))

    def _reserve_free_slots(self) -> int:
        with self._slots:
            free = max(self.concurrency - len(self._executions) - self._reserved, 0)
            self._reserved += free
        return free

    def _begin_reserved(self, runs: list[Run], *, reserved: int) -> None:
        with self._slots:
            self._reserved -= reserved
            self._begin(runs)
