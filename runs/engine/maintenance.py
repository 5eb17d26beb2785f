"""A worker's upkeep, beside claiming and executing runs (`RunWorker` takes these methods): the
cancel flags of its runs read every poll (a cancel whose message was lost), their leases renewed,
its heartbeat recorded, the runs of dead workers reaped, stored stream events past their retention
purged, and its channel layer groups joined again before Redis forgets them.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from runs.engine import bus, queue
from runs.engine.executor import CancelReason
from runs.engine.heartbeats import record_heartbeat
from runs.engine.streaming import purge_stream_events
from runs.models import Run

logger = logging.getLogger(__name__)

#: How often a worker re-joins the wake-up group (Redis forgets memberships after a day).
GROUP_REFRESH_SECONDS = 600.0
#: How often a worker deletes stored stream events whose retention has passed (at most).
PURGE_EVERY_SECONDS = 60.0


class Maintenance:
    """The maintenance loop of `RunWorker` (its `_executions`, `_post_run`, `_join_groups`,
    `_join_lost_groups` and `_send_run_ended`)."""

    worker_id: str
    concurrency: int
    started_at: Any
    _executions: dict[UUID, Any]
    _post_run: set[asyncio.Task[Any]]
    #: The upkeep of the worker's groups in flight (`_keep_groups`), if any.
    _group_upkeep: "asyncio.Task[None] | None" = None

    @property
    def active_run_ids(self) -> list[UUID]:
        return list(self._executions)

    async def _join_groups(self) -> None:
        raise NotImplementedError

    async def _join_lost_groups(self) -> None:
        raise NotImplementedError

    async def _send_run_ended(self, run: Run) -> None:
        raise NotImplementedError

    async def _maintain(self) -> None:
        """Cancel flags every poll; lease renewals every third of a lease; reaping; groups;
        stored stream events past their retention."""
        lease = settings.RUN_LEASE_SECONDS
        renew_every = max(lease / 3.0, 0.05)
        reap_every = max(lease / 2.0, 0.05)
        purge_every = max(min(PURGE_EVERY_SECONDS, settings.STREAM_RETENTION_SECONDS / 2), 0.05)
        tick = min(settings.RUN_POLL_SECONDS, renew_every, purge_every)
        last_renew = last_reap = last_group = last_purge = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            try:
                if now - last_renew >= renew_every:
                    last_renew = now
                    await self._renew()
                    await self._heartbeat()
                    self._keep_groups(self._join_lost_groups)
                elif self._executions:
                    flags = await call_sync(
                        queue.cancel_flags,
                        worker_id=self.worker_id,
                        run_ids=self.active_run_ids,
                        on=Executor.ENGINE,
                    )
                    self._apply_flags(flags, lost_if_missing=False)
                if now - last_reap >= reap_every:
                    last_reap = now
                    await self._reap()
                if now - last_purge >= purge_every:
                    last_purge = now
                    await call_sync(purge_stream_events, on=Executor.ENGINE)
                if now - last_group >= GROUP_REFRESH_SECONDS:
                    last_group = now
                    self._keep_groups(self._join_groups)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("worker %s: maintenance failed", self.worker_id)

    def _keep_groups(self, upkeep: Callable[[], Awaitable[None]]) -> None:
        """`upkeep()` (the worker's groups on the layer) in a task of its own, one at a time,
        given up after `bus.SEND_SECONDS`: a hung Redis never holds up the loop, whose lease
        renewals keep the worker's runs (a lease that expired is reaped, the run ended)."""
        if self._group_upkeep is None or self._group_upkeep.done():
            failure = f"worker {self.worker_id}: cannot keep its layer groups"
            task = asyncio.create_task(
                bus.send_within_bound(upkeep, {}, failure=failure), name="worker-groups"
            )
            self._group_upkeep = task

    async def _renew(self) -> None:
        run_ids = self.active_run_ids
        if not run_ids:
            return
        flags = await call_sync(
            queue.renew_leases, worker_id=self.worker_id, run_ids=run_ids, on=Executor.ENGINE
        )
        self._apply_flags(flags, lost_if_missing=True, asked=run_ids)

    async def _heartbeat(self) -> None:
        await call_sync(
            record_heartbeat,
            worker_id=self.worker_id,
            started_at=self.started_at,
            concurrency=self.concurrency,
            running=len(self._executions),
            on=Executor.ENGINE,
        )

    def _apply_flags(
        self, flags: dict[UUID, str], *, lost_if_missing: bool, asked: list[UUID] | None = None
    ) -> None:
        for run_id, action in flags.items():
            execution = self._executions.get(run_id)
            if execution is not None and action:
                execution.cancel.set(action)
        if lost_if_missing:
            for run_id in asked or []:
                execution = self._executions.get(run_id)
                if run_id not in flags and execution is not None:
                    execution.cancel.set(CancelReason.LOST)

    async def _reap(self) -> None:
        """End the runs of dead workers, then send `run_ended` for each, in a task of its own
        (a webhook's retries never hold up the maintenance loop)."""
        for run in await call_sync(queue.reap_expired, on=Executor.ENGINE):
            self._post_run.add(
                asyncio.create_task(self._send_run_ended(run), name=f"reaped-{run.pk}")
            )
