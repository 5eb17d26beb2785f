"""Signals the engine sends, for the rest of the project to act on without the engine knowing it.

- `run_ended(sender=RunWorker | reap_runs' Command, run=Run)`: a run ended, sent once by
  whoever ended it: the worker that executed it (whatever its outcome), or, for a run whose
  lease expired, the worker or `reap_runs` command that reaped it (the worker that lost the
  run sends nothing). From a worker's event loop with `asend_robust`, in the run's own task
  once its slot is free, or in a task per reaped run (the worker's shutdown waits for either
  as it did for the task it had of its own). The runs app sends the run's webhook and deletes a
  stateless run's thread on it (`runs.after_run`).
"""

import asyncio
import logging
from typing import Any

from django.dispatch import Signal

from deerflow_site.bridge import Executor, call_sync

logger = logging.getLogger(__name__)


class InlineSignal(Signal):
    """A Django signal whose `asend_robust` awaits its receivers in the caller's task.

    Django's own gathers a task for the sync receivers' group and one per async receiver, even
    when there is a single async receiver, as `run_ended` has (three tasks per run). This one
    keeps its contract (sync receivers first, together, behind `call_sync`; async ones
    concurrently; every `Exception` caught and returned in the receiver's pair, so one
    receiver's failure never stops the others or the sender), and makes a task only where two
    async receivers have to run side by side. Unlike Django's, it logs no failure: its sender
    does, once, with what it knows of the occasion (`send_run_ended`: the run).
    """

    async def asend_robust(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        """`[(receiver, response or the Exception it raised), ...]`, sync receivers first."""
        if not self.receivers:
            return []
        sync_receivers, async_receivers = self._live_receivers(sender)
        responses: list[tuple[Any, Any]] = []
        if sync_receivers:
            responses.extend(
                await call_sync(
                    self._send_sync_robust,
                    sync_receivers,
                    sender,
                    named,
                    on=Executor.THREAD_SENSITIVE,
                )
            )
        if len(async_receivers) == 1:
            receiver = async_receivers[0]
            responses.append((receiver, await self._asend_one(receiver, sender, named)))
        elif async_receivers:
            results = await asyncio.gather(
                *(self._asend_one(receiver, sender, named) for receiver in async_receivers)
            )
            responses.extend(zip(async_receivers, results, strict=True))
        return responses

    def _send_sync_robust(
        self, receivers: list[Any], sender: Any, named: dict[str, Any]
    ) -> list[tuple[Any, Any]]:
        responses: list[tuple[Any, Any]] = []
        for receiver in receivers:
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except Exception as err:
                responses.append((receiver, err))
        return responses

    async def _asend_one(self, receiver: Any, sender: Any, named: dict[str, Any]) -> Any:
        try:
            return await receiver(signal=self, sender=sender, **named)
        except Exception as err:
            return err


run_ended = InlineSignal()


async def send_run_ended(run: Any, *, sender: Any) -> None:
    """`run_ended` for `run` from `sender`, in the caller's task; each receiver's failure is
    logged once, with its traceback and the run's id."""
    for receiver, result in await run_ended.asend_robust(sender=sender, run=run):
        if isinstance(result, Exception):
            logger.error("run %s: run_ended receiver %r failed", run.pk, receiver, exc_info=result)
