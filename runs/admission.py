"""Admission of a run: the one path of every create endpoint, from a validated request to a
pending row in the queue.

One transaction with the thread row locked (PostgreSQL `SELECT … FOR UPDATE`; SQLite's IMMEDIATE
transactions serialise writers) applies `if_not_exists`, the assistant and the multitask strategy,
so that its checks hold when two requests race on one thread from two processes. The wake-up of
the workers goes out only after the commit.
"""

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from deerflow_site.api.errors import Invalid
from deerflow_site.api.ids import parse_uuid
from runs.cancellation import cancel_locked
from runs.engine import (
    AssistantNotFound,
    CheckpointNotFound,
    GraphSpec,
    acheckpoint_exists,
    acheckpoint_on_other_thread,
    bus,
    resolve_assistant,
)
from runs.exceptions import CheckpointOfOtherThread, ThreadBusyReject, UnknownGraph
from runs.models import Run
from runs.serializers import RunRequest
from runs.webhooks import check_webhook_target
from threads.exceptions import ThreadExists, ThreadNotFound
from threads.models import Thread
from threads.selectors import get_thread
from threads.services import create_thread


def admit_run(*, user: Any, thread_id: str, body: RunRequest, run_id: UUID | None = None) -> Run:
    """Create a pending run on a thread, applying if_not_exists and the multitask strategy.

    404: the thread is not visible (or unknown with if_not_exists=reject), the assistant is
    unknown; 403: the user may not change the thread; 409: the thread is busy (reject).
    """
    with transaction.atomic():
        thread = _thread_for_run(user=user, thread_id=thread_id, if_not_exists=body.if_not_exists)
        spec = _assistant_for(body=body, thread=thread)
        in_flight = list(
            Run.objects.active().select_for_update().filter(thread=thread).order_by("created_at")
        )
        if in_flight:
            strategy = body.multitask_strategy
            if strategy == Run.MultitaskStrategy.REJECT:
                raise ThreadBusyReject()
            if strategy in (Run.MultitaskStrategy.INTERRUPT, Run.MultitaskStrategy.ROLLBACK):
                for other in in_flight:
                    cancel_locked(run=other, action=strategy)
        now = timezone.now()
        run = Run.objects.create(
            run_id=run_id or uuid.uuid4(),
            thread=thread,
            user=user,
            assistant_id=spec.assistant_id,
            graph_id=spec.graph_id,
            status=Run.Status.PENDING,
            metadata=body.metadata,
            kwargs=body.kwargs,
            multitask_strategy=body.multitask_strategy,
            on_completion=body.on_completion,
            on_disconnect=body.on_disconnect,
            resumable=body.resumable,
            run_at=now + timedelta(seconds=body.after_seconds),
        )
        thread.metadata = {
            **thread.metadata,
            "graph_id": spec.graph_id,
            "assistant_id": str(spec.assistant_id),
        }
        thread.status = Thread.Status.BUSY
        thread.save(update_fields=["metadata", "status", "updated_at"])
        bus.send_after_commit(bus.wake_workers)
    return run


def _thread_for_run(*, user: Any, thread_id: str, if_not_exists: str) -> Thread:
    """The thread a run goes on, its row locked (one created here is ours until commit)."""
    try:
        return get_thread(user=user, thread_id=thread_id, action="change", for_update=True)
    except ThreadNotFound:
        if if_not_exists != "create":
            raise
    try:
        thread, _ = create_thread(user=user, thread_id=thread_id, if_exists="do_nothing")
    except ThreadExists:  # someone else's thread: never reveal that it exists
        raise ThreadNotFound() from None
    return thread


def _assistant_for(*, body: RunRequest, thread: Thread) -> GraphSpec:
    """The graph to run: the requested assistant, else the one the thread last ran."""
    requested = body.assistant_id or thread.metadata.get("assistant_id")
    if not requested:
        raise Invalid({"assistant_id": ["This field is required."]})
    try:
        return resolve_assistant(str(requested))
    except AssistantNotFound:
        if parse_uuid(requested) is not None:
            raise  # an unknown assistant id: 404
        raise UnknownGraph(str(requested)) from None


async def check_checkpoint(*, thread_id: str, body: RunRequest) -> None:
    """The checkpoint a run forks from must exist on its thread (404), not another's (400)."""
    checkpoint = body.checkpoint or {}
    if checkpoint.get("thread_id") not in (None, thread_id):
        raise CheckpointOfOtherThread()
    if not body.checkpoint_id:
        return
    exists = await acheckpoint_exists(
        thread_id=thread_id,
        checkpoint_ns=checkpoint.get("checkpoint_ns") or "",
        checkpoint_id=body.checkpoint_id,
    )
    if not exists:
        if await acheckpoint_on_other_thread(body.checkpoint_id, thread_id):
            raise CheckpointOfOtherThread()
        raise CheckpointNotFound(f"Checkpoint {body.checkpoint_id!r} not found on this thread.")


async def check_webhook(*, body: RunRequest) -> None:
    """The run's webhook must point at an address the server may post to (422 otherwise)."""
    url = body.kwargs.get("webhook")
    if url:
        await check_webhook_target(url)
