"""The worker inside the web process (the embedded default); it takes this process's direct
starts (`runs.engine.direct`)."""

import asyncio
import contextlib
import contextvars
import logging
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from runs.engine.worker import RunWorker

logger = logging.getLogger(__name__)

_task: asyncio.Task | None = None
_worker: "RunWorker | None" = None


def ensure_embedded_worker() -> None:
    """Start the embedded worker on the running loop once, when settings ask for it."""
    global _task, _worker
    if _task is not None or not settings.EMBEDDED_WORKER:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not inside an event loop: nothing to attach to
        return
    from runs.engine.direct import serve_direct_starts
    from runs.engine.worker import RunWorker

    worker = _worker = RunWorker(concurrency=settings.WORKER_CONCURRENCY)
    serve_direct_starts(worker)
    # A fresh context: the worker must not inherit the request's (asgiref's thread-sensitive
    # executor of that request, among others).
    _task = loop.create_task(
        worker.run(), name="embedded-run-worker", context=contextvars.Context()
    )
    _task.add_done_callback(_report_exit)
    logger.info("embedded run worker %s starting", worker.worker_id)


async def stop_embedded_worker() -> None:
    """Stop the embedded worker as `runs_worker` stops on SIGTERM: no new claims, its runs
    finish for up to WORKER_SHUTDOWN_SECONDS, then end `error` (WorkerShutdown). Awaited by the
    web server's shutdown (`deerflow_site.server`); nothing when no worker was started."""
    if _task is None or _worker is None or _task.done():
        return
    _worker.request_stop()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await _task


def _report_exit(task: asyncio.Task) -> None:
    from runs.engine.direct import serve_direct_starts

    serve_direct_starts(None)
    if not task.cancelled() and task.exception() is not None:
        logger.error("the embedded run worker stopped", exc_info=task.exception())
