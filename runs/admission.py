"""Admission of a run: the one path of every create endpoint (`POST /threads/{t}/runs`,
`…/runs/stream`, `…/runs/wait`, `POST /runs`, `/runs/stream`, `/runs/wait`, `/runs/batch`), from a
validated `RunRequest` to a pending row in the queue.

In order: the request's values within the server's limits (`recursion_limit`, `after_seconds`,
the size of a batch: 422), the checkpoint a run forks from (after the thread is authorised, so
that an answer never tells whether another user's thread holds a checkpoint id), the webhook's
address, then one
transaction with the thread row locked (PostgreSQL `SELECT … FOR NO KEY UPDATE`; SQLite's IMMEDIATE
transactions serialise writers) that counts the user's active runs against their quota (429,
the user's row locked first), applies `if_not_exists`, the assistant and the multitask
strategy, so that its checks hold when two requests race on one thread from two processes. The
run starts at once on this process's worker when it can (`runs.engine.direct`); otherwise the
wake-up of the workers goes out only after the commit.

`admit_run` admits one run (async views call it on the API's database threads, with the request's
authentication: one thread hop); `admit_stateless_runs` admits a batch, all or none.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import runs.sql as sql
from deerflow_site.api.ids import parse_uuid
from deerflow_site.bridge import ENGINE_THREAD, Executor, call_async, call_sync
from deerflow_site.errors import Invalid
from deerflow_site.rows import new_instance
from runs.cancellation import cancel_locked
from runs.engine import (
    AssistantNotFound,
    CheckpointNotFound,
    DirectStart,
    GraphSpec,
    acheckpoint_exists,
    acheckpoint_thread_ids,
    arefused_on_thread,
    refused_run_writes,
    reserve_direct_start,
    resolve_assistant,
    thread_busy_or_queue_taken,
    wake_workers_after_commit,
)
from runs.exceptions import (
    CheckpointOfOtherThread,
    NeedsAnotherThread,
    OverLimit,
    ThreadBusyReject,
    TooManyActiveRuns,
    UnknownGraph,
)
from runs.models import Run
from runs.webhooks import check_webhook_target
from threads.exceptions import ThreadExists, ThreadNotFound, ThreadStateUpdating
from threads.models import Thread
from threads.selectors import get_thread, visible_threads
from threads.services import create_thread

T = TypeVar("T")


@dataclass(frozen=True)
class RunRequest:
    """A validated create body: what admission decides on, and the kwargs the executor reads.

    `checkpoint_id` (or `checkpoint.checkpoint_id`) forks the run from that checkpoint of its
    thread; `kwargs` is stored on the run as the request (`Run.kwargs`).
    """

    assistant_id: str | None
    metadata: dict[str, Any]
    multitask_strategy: str
    if_not_exists: str
    on_disconnect: str
    on_completion: str
    after_seconds: float
    resumable: bool
    checkpoint_id: str | None
    checkpoint: dict[str, Any] | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Its input / command.update found taken by the thread's latest values (runs.engine.run_input).
    writes_checked: bool = False

    @property
    def forks(self) -> bool:
        """Whether the run starts from a named checkpoint."""
        return bool(self.checkpoint_id or self.checkpoint)

    @property
    def webhook(self) -> str | None:
        return self.kwargs.get("webhook") or None


class WritesRefused(Exception):
    """The graph's empty channels refuse the run's input or command.update (`refusal`)."""

    def __init__(self, graph_id: str, refusal: dict[str, list[str]]) -> None:
        super().__init__(graph_id, refusal)
        self.graph_id, self.refusal = graph_id, refusal


def _awaited(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """`call_async(fn, ...)`, except on the engine's thread (NeedsAnotherThread): the thread
    would wait for code that waits for it."""
    if ENGINE_THREAD.is_current():
        raise NeedsAnotherThread
    return call_async(fn, *args, **kwargs)


def admit_run(
    *, user: Any, thread_id: str | None, request: RunRequest, run_id: UUID | None = None
) -> Run:
    """Create a pending run on a thread (None: a new thread, for a stateless run), applying the
    fork checkpoint, the webhook rule, if_not_exists and the multitask strategy.

    Raises ThreadNotFound (404: not visible, or unknown with if_not_exists=reject), Forbidden
    (403: the user may not change the thread, or delete it with on_completion=delete),
    CheckpointNotFound (404),
    CheckpointOfOtherThread (400), WebhookRefused (422), AssistantNotFound (404), Invalid (422:
    no assistant, or an input or command.update the graph's channels refuse), ThreadBusyReject
    (409: busy with multitask_strategy=reject), ThreadStateUpdating (409: a state update under
    way, whatever the strategy), OverLimit (422:
    recursion_limit or after_seconds over its setting), TooManyActiveRuns (429).
    """
    check_limits(request)
    stateless = thread_id is None
    thread_id = thread_id or str(uuid.uuid4())
    if request.forks or request.webhook:
        new_thread = stateless or (
            request.forks and _authorise(user=user, thread_id=thread_id, request=request)
        )
        _awaited(_acheck, user=user, thread_id=thread_id, request=request, new_thread=new_thread)
    try:
        return _insert(user=user, thread_id=thread_id, request=request, run_id=run_id)
    except WritesRefused as exc:
        # Refused by empty channels: a thread's own values may take them (a removal by id).
        refusal = exc.refusal
        if not stateless:
            refusal = _awaited(arefused_on_thread, exc.graph_id, thread_id, request.kwargs)
        if refusal is not None:
            raise Invalid(refusal) from None
    request = replace(request, writes_checked=True)
    return _insert(user=user, thread_id=thread_id, request=request, run_id=run_id)


def admit_stateless_runs(*, user: Any, requests: list[RunRequest]) -> list[Run]:
    """Admit one stateless run per request, each on a new thread: all of them or none.

    The errors of `admit_run`; a WebhookRefused or Invalid names the request's index.
    """
    if len(requests) > settings.MAX_BATCH_SIZE:
        raise OverLimit("runs", settings.MAX_BATCH_SIZE, "DEERFLOW_MAX_BATCH_SIZE")
    thread_ids = [str(uuid.uuid4()) for _ in requests]
    for index, (thread_id, request) in enumerate(zip(thread_ids, requests, strict=True)):
        try:
            check_limits(request)
        except Invalid as exc:
            raise Invalid({index: exc.detail}) from None
        if request.forks or request.webhook:
            try:
                _awaited(_acheck, user=user, thread_id=thread_id, request=request, new_thread=True)
            except Invalid as exc:
                raise Invalid({index: exc.detail}) from None
    with transaction.atomic():
        runs = []
        for index, (thread_id, request) in enumerate(zip(thread_ids, requests, strict=True)):
            try:
                runs.append(_insert(user=user, thread_id=thread_id, request=request, run_id=None))
            except Invalid as exc:
                raise Invalid({index: exc.detail}) from None
            except WritesRefused as exc:  # exact on a new thread
                raise Invalid({index: exc.refusal}) from None
        return runs


def check_limits(request: RunRequest) -> None:
    """The request's values within the server's limits (settings), else OverLimit (422) naming
    the field: `config.recursion_limit` ≤ MAX_RECURSION_LIMIT, `after_seconds` (seconds) ≤
    MAX_AFTER_SECONDS."""
    limit = (request.kwargs.get("config") or {}).get("recursion_limit")
    if limit is not None and limit > settings.MAX_RECURSION_LIMIT:
        raise OverLimit(
            "recursion_limit", settings.MAX_RECURSION_LIMIT, "DEERFLOW_MAX_RECURSION_LIMIT"
        )
    if request.after_seconds > settings.MAX_AFTER_SECONDS:
        raise OverLimit("after_seconds", settings.MAX_AFTER_SECONDS, "DEERFLOW_MAX_AFTER_SECONDS")


def _check_active_runs_quota(user: Any) -> None:
    """TooManyActiveRuns (429) when the user already has MAX_ACTIVE_RUNS_PER_USER pending or
    running runs. Holds the user's row until the transaction ends, so that concurrent
    admissions of one user count one after the other (0: no limit)."""
    limit = settings.MAX_ACTIVE_RUNS_PER_USER
    if limit <= 0 or user is None or user.pk is None:
        return
    sql.lock_user(user.pk)
    if sql.count_active_runs_of_user(user.pk) >= limit:
        raise TooManyActiveRuns(limit)


def _authorise(*, user: Any, thread_id: str, request: RunRequest) -> bool:
    """Whether the run's thread is new (if_not_exists=create); raises as admission would when
    the user may not run on it. Admission's transaction checks again, holding the row."""
    try:
        get_thread(user=user, thread_id=thread_id, action="change")
        return False
    except ThreadNotFound:
        if request.if_not_exists != "create" or Thread.objects.filter(pk=thread_id).exists():
            raise
    return True


async def _acheck(*, user: Any, thread_id: str, request: RunRequest, new_thread: bool) -> None:
    """What admission checks outside its transaction: the fork checkpoint, the webhook."""
    if request.forks:
        await _acheck_fork(user=user, thread_id=thread_id, request=request, new_thread=new_thread)
    if request.webhook:
        await check_webhook_target(request.webhook)


async def _acheck_fork(*, user: Any, thread_id: str, request: RunRequest, new_thread: bool) -> None:
    """The checkpoint a run forks from must exist on its thread (else 404), and is a 400 when
    it is on another thread the user may see (SPEC: "404 unknown, 400 of another thread")."""
    checkpoint = request.checkpoint or {}
    if checkpoint.get("thread_id") not in (None, thread_id):
        raise CheckpointOfOtherThread()
    if not request.checkpoint_id:
        return
    if not new_thread and await acheckpoint_exists(
        thread_id=thread_id,
        checkpoint_ns=checkpoint.get("checkpoint_ns") or "",
        checkpoint_id=request.checkpoint_id,
    ):
        return
    holders = await acheckpoint_thread_ids(request.checkpoint_id, excluding=thread_id)
    if holders and await call_sync(_any_visible, user=user, thread_ids=holders, on=Executor.API):
        raise CheckpointOfOtherThread()
    raise CheckpointNotFound(f"Checkpoint {request.checkpoint_id!r} not found on this thread.")


def _any_visible(*, user: Any, thread_ids: list[str]) -> bool:
    return visible_threads(user=user).filter(pk__in=thread_ids).exists()


def _insert(*, user: Any, thread_id: str, request: RunRequest, run_id: UUID | None) -> Run:
    """The transaction of admission: the thread locked (created with if_not_exists=create), the
    assistant, the multitask strategy, the row: `running` on this process's worker when it can
    start at once (`runs.engine.direct`), else pending, the workers woken after the commit."""
    direct = reserve_direct_start(after_seconds=request.after_seconds)
    try:
        with transaction.atomic():
            run = _insert_locked(
                user=user, thread_id=thread_id, request=request, run_id=run_id, direct=direct
            )
    except BaseException:
        if direct is not None:
            direct.release()
        raise
    if direct is not None:
        if run.status == Run.Status.RUNNING:
            direct.hand_off(run)
        else:
            direct.release()
    return run


def _insert_locked(
    *,
    user: Any,
    thread_id: str,
    request: RunRequest,
    run_id: UUID | None,
    direct: DirectStart | None,
) -> Run:
    _check_active_runs_quota(user)
    thread = _thread_for_run(user=user, thread_id=thread_id, request=request)
    if thread.state_update_under_way():
        raise ThreadStateUpdating()  # the run would start from the state being replaced
    spec = _assistant_for(request=request, thread=thread)
    refusal = None if request.writes_checked else refused_run_writes(spec.graph_id, request.kwargs)
    if refusal is not None:
        raise WritesRefused(spec.graph_id, refusal)
    # A direct start also needs the queue clear: one read says both, and the in-flight runs
    # are then locked only when the thread has some.
    busy, queue_taken = True, True
    if direct is not None:
        busy, queue_taken = thread_busy_or_queue_taken(thread.pk, timezone.now())
    in_flight = sql.lock_in_flight_run_keys(thread.pk) if busy else []
    if in_flight:
        strategy = request.multitask_strategy
        if strategy == Run.MultitaskStrategy.REJECT:
            raise ThreadBusyReject()
        if strategy in (Run.MultitaskStrategy.INTERRUPT, Run.MultitaskStrategy.ROLLBACK):
            for other in Run.objects.filter(pk__in=in_flight).order_by("created_at"):
                cancel_locked(run=other, action=strategy)
    now = timezone.now()
    run = new_instance(
        Run,
        run_id=run_id or uuid.uuid4(),
        thread_id=thread.pk,
        user_id=None if user is None else user.pk,
        assistant_id=spec.assistant_id,
        graph_id=spec.graph_id,
        status=Run.Status.PENDING,
        metadata=request.metadata,
        kwargs=request.kwargs,
        multitask_strategy=request.multitask_strategy,
        on_completion=request.on_completion,
        on_disconnect=request.on_disconnect,
        resumable=request.resumable,
        run_at=now + timedelta(seconds=request.after_seconds),
        created_at=now,
        updated_at=now,
    )
    # What Run(thread=thread, user=user) keeps: the related objects, read without a query.
    Run.thread.field.set_cached_value(run, thread)
    if user is not None:
        Run.user.field.set_cached_value(run, user)
    metadata = {
        **thread.metadata,
        "graph_id": spec.graph_id,
        "assistant_id": str(spec.assistant_id),
    }
    if (
        direct is not None
        and not in_flight
        and not queue_taken
        and _insert_running(run, direct=direct, now=now)
    ):
        sql.mark_thread_busy(thread.pk, metadata=metadata, now=now)
    else:
        sql.insert_run_marking_busy(run, metadata=metadata, now=now)
        wake_workers_after_commit()
    thread.metadata, thread.status, thread.updated_at = metadata, Thread.Status.BUSY, now
    return run


def _insert_running(run: Run, *, direct: DirectStart, now: datetime) -> bool:
    """Insert the run `running` under the direct start's worker and lease; False (nothing
    inserted, the run as it was) when its thread has a running run already."""
    run.status, run.worker_id, run.started_at, run.attempt = (
        Run.Status.RUNNING,
        direct.worker_id,
        now,
        1,
    )
    run.lease_expires_at = direct.lease_expires_at(now)
    if sql.insert_run(run, unless_thread_runs=True):
        return True
    run.status, run.worker_id, run.started_at, run.attempt = Run.Status.PENDING, "", None, 0
    run.lease_expires_at = None
    return False


def _thread_for_run(*, user: Any, thread_id: str, request: RunRequest) -> Thread:
    """The thread a run goes on, its row locked (one created here is ours until commit); its
    state is not read (admission needs its metadata only).

    A run that deletes its thread when it ends (on_completion=delete) needs the right to delete
    an existing thread too, not only to change it: Forbidden (403) otherwise."""
    try:
        thread = get_thread(
            user=user, thread_id=thread_id, action="change", for_update=True, with_state=False
        )
    except ThreadNotFound:
        if request.if_not_exists != "create":
            raise
    else:
        if request.on_completion == Run.OnCompletion.DELETE:
            get_thread(user=user, thread_id=thread_id, action="delete", with_state=False)
        return thread
    try:
        thread, _ = create_thread(user=user, thread_id=thread_id, if_exists="do_nothing")
    except ThreadExists:  # someone else's thread: never reveal that it exists
        raise ThreadNotFound() from None
    return thread


def _assistant_for(*, request: RunRequest, thread: Thread) -> GraphSpec:
    """The graph to run: the requested assistant, else the one the thread last ran."""
    requested = request.assistant_id or thread.metadata.get("assistant_id")
    if not requested:
        raise Invalid({"assistant_id": ["This field is required."]})
    try:
        return resolve_assistant(str(requested))
    except AssistantNotFound:
        if parse_uuid(requested) is not None:
            raise  # an unknown assistant id: 404
        raise UnknownGraph(str(requested)) from None
