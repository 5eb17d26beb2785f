"""The run worker: claims pending runs, executes them, renews their leases, obeys cancels.

Wake-ups and cancels arrive on the channel layer: the worker's own channel joins the wake-up
group and the worker's control group, where cancels of the runs it executes are sent. The
database is polled as well, so a lost message costs at most RUN_POLL_SECONDS. Every worker also
reaps runs whose lease expired, so a dead worker's runs end `error` and free their threads; runs
left `running` by a previous incarnation of this process are recovered the same way, once their
lease expires (a worker id is unique per process, so there is no telling whether another
process on this host still owns them).
"""

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.logs import bind_run, bind_worker, run_fields
from deerflow_site.loop_inbox import loop_inbox
from runs.engine import bus, publishing, queue
from runs.engine.executor import CancelReason, CancelSignal, execute_run
from runs.engine.graphs import describe_agent_model
from runs.engine.heartbeats import forget_worker
from runs.engine.maintenance import Maintenance
from runs.engine.registry import graph_specs, load_graph
from runs.engine.signals import send_run_ended
from runs.engine.slots import Slots
from runs.models import Run

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Execution:
    run: Run
    cancel: CancelSignal
    task: asyncio.Task[Any]  # held here: the loop keeps only a weak reference to a task


class RunWorker(Maintenance, Slots):
    """Executes up to `concurrency` runs at once on the running event loop."""

    def __init__(self, *, concurrency: int, worker_id: str | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.worker_id = worker_id or default_worker_id()
        self.channel = ""
        self.started_at = timezone.now()
        self._executions: dict[UUID, _Execution] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self._post_run: set[asyncio.Task[Any]] = set()
        self._groups_lost = False
        self._init_slots()
        #: Set once the worker listens for wake-ups and claims runs.
        self.started = asyncio.Event()

    # --- Life cycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and execute runs until `stop()`."""
        bind_worker(self.worker_id)
        self._inbox = loop_inbox()
        await self._start()
        try:
            await self._claim_loop()
        finally:
            await self._shutdown()

    def request_stop(self) -> None:
        """Stop claiming; `run()` returns once running runs are finished (or stopped)."""
        self._stopping.set()
        self._accepting = False
        self._wake.set()

    async def _start(self) -> None:
        layer = bus.layer()
        # The default prefix: channels_redis serialises every receive of a process on one lock,
        # so a channel with another prefix would starve the process's stream listeners.
        self.channel = await layer.new_channel()
        # Joined in the background, bounded (`_keep_groups`), while the graphs load: a hung
        # Redis holds up the start by `bus.SEND_SECONDS` at most, and the maintenance loop joins
        # them once it answers. Claiming needs no group: the database is the record, and the
        # cancel flags of the worker's runs are read every poll.
        self._groups_lost = True
        self._keep_groups(self._join_lost_groups)
        await call_sync(_warm_up_graphs, on=Executor.BLOCKING)
        if self._group_upkeep is not None:  # joined before the first claim when Redis answers
            await asyncio.wait({self._group_upkeep})
        logger.info(
            "run worker %s started: concurrency %s, agent model %s",
            self.worker_id,
            self.concurrency,
            describe_agent_model(),
        )
        self._background = [
            asyncio.create_task(self._listen(), name="worker-listen"),
            asyncio.create_task(self._maintain(), name="worker-maintain"),
        ]
        self.started_at = timezone.now()
        await self._heartbeat()
        self._accepting = not self._stopping.is_set()
        self.started.set()

    async def _join_groups(self) -> None:
        """Wake-ups, and the cancels of the runs this worker executes."""
        layer = bus.layer()
        await layer.group_add(bus.WAKEUP_GROUP, self.channel)
        await layer.group_add(bus.worker_control_group(self.worker_id), self.channel)
        if mark_alive := getattr(layer, "mark_alive", None):
            await mark_alive(self.channel)  # `_join_lost_groups` looks for its key

    async def _join_lost_groups(self) -> None:
        """Join the groups again once Redis is found to have lost them (restarted without its
        data: `RedisChannelLayer.mark_alive`), then look at the queue for lost wake-ups. A
        failure (or its caller's bound, `Maintenance._keep_groups`) leaves them to be joined
        at the next call: the key may have been set without an answer."""
        mark_alive = getattr(bus.layer(), "mark_alive", None)
        try:
            if mark_alive is not None and await mark_alive(self.channel):
                self._groups_lost = True
            if self._groups_lost:
                await self._join_groups()
                self._groups_lost = False
                self._wake.set()
        except BaseException:
            self._groups_lost = True
            raise

    async def _shutdown(self) -> None:
        self._accepting = False
        if self._executions:
            logger.info(
                "worker %s: waiting for %s running run(s)", self.worker_id, len(self._executions)
            )
            await self._until_executions_end(within=settings.WORKER_SHUTDOWN_SECONDS)
        # Runs still going are ended `error` (the renewals keep their leases meanwhile).
        for execution in list(self._executions.values()):
            execution.cancel.set(CancelReason.SHUTDOWN)
        await self._until_executions_end(within=30.0)
        # Then their run_ended receivers (in the runs' tasks) get a few seconds more.
        if self._post_run:
            await asyncio.wait(self._post_run, timeout=5.0)
            for task in list(self._post_run):
                task.cancel()
        background = [*self._background, *([self._group_upkeep] if self._group_upkeep else [])]
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):  # bounded: a hung Redis holds no shutdown up
            async with bus.bounded():
                await bus.layer().group_discard(bus.WAKEUP_GROUP, self.channel)
                group = bus.worker_control_group(self.worker_id)
                await bus.layer().group_discard(group, self.channel)
        with contextlib.suppress(Exception):
            await call_sync(forget_worker, worker_id=self.worker_id, on=Executor.ENGINE)
        logger.info("run worker %s stopped", self.worker_id)

    async def _until_executions_end(self, *, within: float) -> None:
        """Until no run executes (their receivers of `run_ended` may go on), at most `within`
        seconds: every execution's end sets `_wake`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._executions:
                    self._wake.clear()
                    await self._wake.wait()

    # --- Claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            claim = queue.Claim(runs=[])
            try:
                claim = await self._claim()
            except Exception:
                logger.exception("worker %s: claiming failed", self.worker_id)
            # Fewer runs than free slots: none other was eligible (next_due says when one
            # will be). A wake-up that came meanwhile is still set: no sleep then.
            await self._sleep(claim.next_due)

    async def _claim(self) -> queue.Claim:
        """Claim runs for the free slots. A plain read first: when nothing is eligible (the
        common case beside direct starts), no slot is held, so direct starts go on meanwhile.
        The read and the claim after it are one hop to the engine's thread (`_idle_or_claim`)."""
        if self.concurrency - len(self._executions) - self._reserved <= 0:
            return queue.Claim(runs=[])
        events_before = self._queue_events
        idle, claim, reserved = await call_sync(self._idle_or_claim, on=Executor.ENGINE)
        self.note_queue_polled(
            empty=idle is not None and idle.queue_empty, events_before=events_before
        )
        if idle is not None:
            self._backlog = False
            return idle
        self._begin_reserved(claim.runs, reserved=reserved)
        # Every free slot filled: more runs may wait, and they go before any direct start.
        self._backlog = reserved > 0 and len(claim.runs) == reserved
        return claim

    def _idle_or_claim(self) -> tuple[queue.Claim | None, queue.Claim, int]:
        """On the engine's thread: the idle poll (`queue.idle`), and when it found a run
        eligible, the claim for every slot free then (reserved here: the slots' lock makes it
        thread-safe; the worker's loop begins the runs and frees the reservation). Returns
        (the idle poll's answer, None when it found a run eligible; the claim; slots
        reserved). A failing claim frees its reservation and raises."""
        idle = queue.idle()
        if idle is not None:
            return idle, idle, 0
        free = self._reserve_free_slots()
        if free == 0:
            return None, queue.Claim(runs=[]), 0
        try:
            claim = queue.claim_runs(worker_id=self.worker_id, limit=free, eligible=True)
        except BaseException:
            self._begin_reserved([], reserved=free)  # begins nothing: frees the slots
            raise
        return None, claim, free

    async def _sleep(self, next_due: datetime | None) -> None:
        """Until woken, the next pending run is due, or the next poll."""
        timeout = settings.RUN_POLL_SECONDS
        if next_due is not None:
            until_due = (next_due - timezone.now()).total_seconds()
            timeout = min(timeout, max(until_due, 0.0) + 0.01)
        if self._wake.is_set():
            return
        # A timeout around the wait, not wait_for: no task per sleep.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()

    def _begin(self, runs: list[Run]) -> None:
        for run in runs:
            cancel = CancelSignal()
            if run.cancel_action:
                cancel.set(run.cancel_action)
            task = asyncio.create_task(self._execute(run, cancel), name=f"run-{run.pk}")
            self._executions[run.pk] = _Execution(run=run, cancel=cancel, task=task)

    async def _execute(self, run: Run, cancel: CancelSignal) -> None:
        bind_run(run_id=run.pk, thread_id=run.thread_id)
        outcome = None
        try:
            outcome = await execute_run(run, cancel=cancel)
        except Exception:
            # The lease is left to expire: the reaper ends the run with a clear reason.
            logger.exception("worker %s: run %s could not be finished", self.worker_id, run.pk)
        finally:
            self._executions.pop(run.pk, None)
            # The claim loop looks at the queue for the freed slot, unless the last look found
            # it empty and no run was queued since (then its poll looks, as for a lost wake-up).
            if not self._queue_empty or not self._accepting:
                self._wake.set()
        # A run this worker did not end (lost, or left to expire) gets its `run_ended` from
        # whoever ends it: the reaper (`_reap`), so its webhook is sent once.
        if outcome is not None:
            await self._send_run_ended(run)

    async def _send_run_ended(self, run: Run) -> None:
        """`run_ended`'s receivers, awaited in the run's own task once its slot is free (no
        task of their own); the shutdown waits for them as for any post-run work. Receivers'
        failures are logged."""
        task = asyncio.current_task()
        assert task is not None
        self._post_run.add(task)
        try:
            await send_run_ended(run, sender=RunWorker)
        finally:
            self._post_run.discard(task)

    # --- Messages ------------------------------------------------------------------------

    async def _listen(self) -> None:
        layer = bus.layer()
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker %s: channel layer receive failed", self.worker_id)
                await asyncio.sleep(settings.RUN_POLL_SECONDS)
                continue
            kind = message.get("type")
            if kind == bus.WAKEUP:
                with self._slots:
                    self._note_queued()
                self._wake.set()
            elif kind == bus.CANCEL:
                self._cancel(message.get("run_id"), message.get("action") or CancelReason.INTERRUPT)
            elif kind == bus.LISTEN:
                publishing.note_listener(message)

    def _cancel(self, run_id: Any, action: str) -> None:
        try:
            execution = self._executions.get(UUID(str(run_id)))
        except ValueError:
            return
        if execution is not None and action:
            logger.info(
                "worker %s: %s run %s",
                self.worker_id,
                action,
                run_id,
                extra=run_fields(execution.run),
            )
            execution.cancel.set(action)


def _warm_up_graphs() -> None:
    """Import and compile every graph before the first run (and report broken ones early)."""
    for graph_id in graph_specs():
        try:
            load_graph(graph_id)
        except Exception:
            logger.exception("graph %s cannot be loaded", graph_id)


def run_worker_process(*, concurrency: int) -> None:
    """A dedicated worker process: runs until SIGTERM or SIGINT, then stops gracefully."""
    import signal

    from deerflow_site.heap import settle_heap
    from runs.engine.checkpointer import close_checkpointer

    async def main() -> None:
        worker = RunWorker(concurrency=concurrency)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.request_stop)
        try:
            await worker.run()
        finally:
            await close_checkpointer()

    settle_heap()
    asyncio.run(main())
