"""What happens after a run has ended: its webhook, and deleting a stateless run's thread.

Connected to the engine's `run_ended` signal in `RunsConfig.ready`.
"""

import asyncio
import logging
from typing import Any

from django.conf import settings

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.redaction import Redactor
from runs.models import Run
from runs.serializers import run_json
from runs.webhooks import post_webhook
from threads.exceptions import ThreadBusy
from threads.models import Thread
from threads.services import delete_thread

logger = logging.getLogger(__name__)


async def on_run_ended(sender: Any, *, run: Run, **kwargs: Any) -> None:
    """The `run_ended` receiver."""
    await after_run(run)


async def after_run(run: Run) -> None:
    """Send the run's webhook, then delete its thread if it asked for it (on_completion)."""
    try:
        if (run.kwargs or {}).get("webhook"):
            await send_webhook(run_id=run.pk, url=run.kwargs["webhook"])
        if run.on_completion == Run.OnCompletion.DELETE:
            await delete_temporary_thread(run)
    except Exception:
        logger.exception("run %s: after-run work failed", run.pk)


async def delete_temporary_thread(run: Run) -> None:
    """A stateless run's thread (on_completion=delete), deleted ON_COMPLETION_DELETE_SECONDS
    after the run ended: by `after_run`, or for a run cancelled before it started, which no
    worker ends (`runs.cancellation`)."""
    await asyncio.sleep(settings.ON_COMPLETION_DELETE_SECONDS)
    await call_sync(delete_finished_thread, thread_id=run.thread_id, on=Executor.ENGINE)


def webhook_payload(*, run_id: Any) -> dict[str, Any] | None:
    """The Run as the API shows it, plus the thread's values and the run's error and times."""
    run = Run.objects.select_related("thread").filter(pk=run_id).first()
    if run is None or run.is_active:
        return None
    return Redactor.for_run(run.kwargs).redact(
        {
            **run_json(run),
            "values": run.thread.values,
            "error": run.error,
            "run_started_at": run.started_at.isoformat() if run.started_at else None,
            "run_ended_at": run.ended_at.isoformat() if run.ended_at else None,
        }
    )


async def send_webhook(*, run_id: Any, url: str) -> bool:
    """POST the finished run to `url` (runs.webhooks.post_webhook: retries, backoff, timeout,
    the address rule) and record the outcome on the run; True once delivered.

    A failing webhook is logged and recorded, and never changes the run's own outcome.
    """
    payload = await call_sync(webhook_payload, run_id=run_id, on=Executor.ENGINE)
    if payload is None:
        return False
    delivery = await post_webhook(url=url, payload=payload)
    tries = f"{delivery.attempts} attempt(s)"
    if delivery.delivered:
        status, detail = Run.WebhookStatus.DELIVERED, f"delivered after {tries}"
    else:
        status, detail = Run.WebhookStatus.FAILED, f"{delivery.detail} (after {tries})"
        logger.warning("run %s: webhook to %s failed: %s", run_id, url, detail)
    await call_sync(
        _record_webhook, run_id=run_id, status=status, detail=detail, on=Executor.ENGINE
    )
    return delivery.delivered


def _record_webhook(*, run_id: Any, status: str, detail: str) -> None:
    Run.objects.filter(pk=run_id).update(webhook_status=status, webhook_detail=detail[:500])


def delete_finished_thread(*, thread_id: str) -> None:
    """Delete a stateless run's thread, unless another run is using it."""
    thread = Thread.objects.filter(pk=thread_id).first()
    if thread is None:
        return
    try:
        delete_thread(thread=thread)
    except ThreadBusy:
        logger.info("thread %s not deleted after its run: another run is active", thread_id)
