"""Direct start: a run admitted in a process whose embedded worker has a free slot is inserted
already `running`, under that worker's id and lease, in admission's own transaction, and handed
to the worker on its event loop after the commit: no wake-up message, no claim query, no poll.

Only when nothing would be overtaken or broken: the run is due now (no `after_seconds`), its
thread has no pending or running run (admission holds the thread's row), and the queue holds no
eligible pending run (fair claiming serves those first). The partial unique index "one running
run per thread" stays the last word: a run it refuses goes into the queue, pending.

The slot is reserved before the transaction, atomically with the worker's own claims (both
count the worker's running and reserved runs under one lock), so the worker never runs more
than `concurrency` runs. The row is the same durable record a claim writes: if the hand-off
fails, or the process dies before the run ends, the lease expires and the reaper ends it like
any claimed run.
"""

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection, transaction

from deerflow_site.loop_inbox import after_reply
from runs.engine import bus, queue

if TYPE_CHECKING:
    from runs.engine.worker import RunWorker
    from runs.models import Run

logger = logging.getLogger(__name__)

#: The worker of this process that takes direct starts (the embedded worker), if any.
_local_worker: "RunWorker | None" = None


def serve_direct_starts(worker: "RunWorker | None") -> None:
    """Make `worker` (running on this process's event loop) the one that takes direct starts;
    None: no direct starts in this process."""
    global _local_worker
    _local_worker = worker


@dataclass
class DirectStart:
    """A slot reserved on the local worker for one run being admitted: `hand_off` the run once
    its row is committed `running`, else `release` the slot."""

    worker: "RunWorker"

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def lease_expires_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=settings.RUN_LEASE_SECONDS)

    def hand_off(self, run: "Run") -> None:
        """Give the committed running run to the worker (thread-safe), once the thread hop
        admitting it has answered its caller (`after_reply`): the admitting request resumes
        first, and a stream's `metadata` goes out before the run's start work. A failure is
        logged: the run's lease expires and the reaper ends it, as for any claimed run."""
        after_reply(functools.partial(self._start, run))

    def _start(self, run: "Run") -> None:
        try:
            self.worker.start_reserved(run)
        except Exception:
            logger.exception("run %s: the direct start could not be handed to the worker", run.pk)

    def release(self) -> None:
        self.worker.release_slot()


def reserve_direct_start(*, after_seconds: float) -> DirectStart | None:
    """A reserved slot on the local worker for a run due in `after_seconds` (seconds), or None
    when the run must go through the queue: no local worker, no free slot, a run not due now,
    or a caller's transaction around admission (the hand-off needs admission's own commit)."""
    worker = _local_worker
    if worker is None or after_seconds > 0 or connection.in_atomic_block:
        return None
    if not worker.reserve_slot():
        return None
    return DirectStart(worker)


def wake_workers_after_commit() -> None:
    """Tell the workers, once admission commits, that a pending run waits in the queue (without
    waiting for the message: `bus.wake_workers_soon`).

    With a channel layer that reaches no other process (the in-memory one) only this process's
    worker could hear the message: it is woken directly instead, and only when it has a free
    slot (a full worker looks at the queue again as each of its runs ends).
    """
    worker = _local_worker
    if worker is None or bus.reaches_other_processes():
        transaction.on_commit(bus.wake_workers_soon)
    else:
        transaction.on_commit(worker.wake_if_free)


def thread_busy_or_queue_taken(thread_id: str, now: datetime) -> tuple[bool, bool]:
    """What a direct start waits on, in one read: (the thread has a pending or running run,
    the queue holds a run eligible now)."""
    return queue.thread_active_and_any_eligible(thread_id, now)
