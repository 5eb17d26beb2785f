"""Executing one claimed run: LangGraph's astream with the checkpointer, events to the bus.

The order at the end is the contract: the run's final status and its thread's are committed
first, `end` is published after, so that a client who sees the stream close can trust the
status it reads.
"""

import asyncio
import dataclasses
import functools
import logging
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from django.db import models
from langchain_core.callbacks import BaseCallbackHandler
from langgraph._internal._constants import CONFIG_KEY_STRICT_RESUME
from langgraph.pregel import Pregel
from langgraph.types import Command, Send

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.dbcompat import jsonb_storable
from runs.engine import answers
from runs.engine.checkpoints import adelete_run_checkpoints
from runs.engine.final_state import FinalState
from runs.engine.finish import RunOutcome, ThreadSnapshot, finish_run, snapshot_of
from runs.engine.journal import JournalWriter, RunJournal
from runs.engine.registry import graph_for_thread
from runs.engine.serial_saver import RunWrites, defer_writes
from runs.engine.streaming import ChunkTranslator, EventPublisher, langgraph_modes
from runs.journal.lifecycle import run_ended
from runs.models import Run

logger = logging.getLogger(__name__)

#: Client config keys passed to the graph (callbacks and the like are the server's).
CONFIG_KEYS = ("tags", "recursion_limit", "run_name", "max_concurrency")
#: How long a cancelled graph may take to unwind before the run is ended anyway.
CANCEL_GRACE_SECONDS = 5.0
#: Exceptions from these modules are the server's business: their messages stay in the logs.
INTERNAL_MODULES = ("django.", "psycopg", "sqlite3", "aiosqlite", "channels", "redis")
INTERNAL_MESSAGE = "An internal error occurred while running the graph."
WORKER_SHUTDOWN = {"error": "WorkerShutdown", "message": "the worker shut down during the run"}


class CancelReason(models.TextChoices):
    """Why a running run must stop, weakest first: a user's cancel (`interrupt`, `rollback`,
    the values of `Run.CancelAction`), the worker shutting down, or the lease lost (another
    worker or the reaper owns the run now)."""

    INTERRUPT = Run.CancelAction.INTERRUPT.value
    ROLLBACK = Run.CancelAction.ROLLBACK.value
    SHUTDOWN = "shutdown"
    LOST = "lost"


class CancelSignal:
    """The strongest reason a running run was given to stop (`action`; "" while none)."""

    PRIORITY = {reason: rank for rank, reason in enumerate(CancelReason, start=1)}

    def __init__(self) -> None:
        self.action: CancelReason | str = ""
        self._is_set = False
        self._waiters: list[asyncio.Future[None]] = []

    def set(self, action: str) -> None:
        """Raise the reason to `action` (if stronger); on the event loop's thread."""
        if action not in self.PRIORITY:
            logger.warning("ignoring unknown cancel action %r", action)
            return
        reason = CancelReason(action)
        if self.PRIORITY[reason] > self.PRIORITY.get(self.action, 0):
            self.action = reason
        self._is_set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def is_set(self) -> bool:
        return self._is_set

    def future(self) -> "asyncio.Future[None]":
        """A future done once a reason is set (a plain future to wait on beside others: no
        task per run)."""
        waiter = asyncio.get_running_loop().create_future()
        if self._is_set:
            waiter.set_result(None)
        else:
            self._waiters.append(waiter)
        return waiter


@dataclass
class RunPlan:
    """What to pass to LangGraph for a run, from its stored request (`Run.kwargs`)."""

    input: Any
    config: dict[str, Any]
    stream_modes: list[str]
    subgraphs: bool = False
    stream_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def wants_events(self) -> bool:
        return "events" in self.stream_modes


def plan_run(run: Run, callbacks: list[BaseCallbackHandler]) -> RunPlan:
    kwargs = run.kwargs or {}
    client_config = kwargs.get("config") or {}
    configurable = {
        key: value
        for key, value in (client_config.get("configurable") or {}).items()
        if not str(key).startswith("__")
    }
    checkpoint = kwargs.get("checkpoint") or {}
    for key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
        if checkpoint.get(key) is not None:
            configurable[key] = checkpoint[key]
    if kwargs.get("checkpoint_id"):
        configurable["checkpoint_id"] = kwargs["checkpoint_id"]
    server_keys = {
        "thread_id": run.thread_id,
        "run_id": str(run.run_id),
        "graph_id": run.graph_id,
        "assistant_id": str(run.assistant_id),
        "user_id": str(run.user_id) if run.user_id is not None else "",
    }
    configurable.update(server_keys)
    if kwargs.get("strict_resume"):
        configurable[CONFIG_KEY_STRICT_RESUME] = True
    config: dict[str, Any] = {k: client_config[k] for k in CONFIG_KEYS if k in client_config}
    # Checkpoint metadata takes config metadata first: run_id must be ours (rollback finds
    # a run's checkpoints by it).
    config["metadata"] = {**(client_config.get("metadata") or {}), **run.metadata, **server_keys}
    config["configurable"] = configurable
    config["callbacks"] = callbacks
    config["run_id"] = run.run_id

    stream_kwargs: dict[str, Any] = {}
    for key in ("interrupt_before", "interrupt_after", "durability"):
        if kwargs.get(key):
            stream_kwargs[key] = kwargs[key]
    if kwargs.get("context") is not None:
        stream_kwargs["context"] = kwargs["context"]
    return RunPlan(
        input=_graph_input(kwargs),
        config=config,
        stream_modes=_as_list(kwargs.get("stream_mode")) or ["values"],
        subgraphs=bool(kwargs.get("subgraphs")),
        stream_kwargs=stream_kwargs,
    )


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _graph_input(kwargs: dict[str, Any]) -> Any:
    command = kwargs.get("command")
    if not command:
        return kwargs.get("input")
    arguments: dict[str, Any] = {}
    if "resume" in command:
        arguments["resume"] = command["resume"]
    if command.get("update") is not None:
        arguments["update"] = command["update"]
    if command.get("goto"):
        goto = command["goto"]
        targets = goto if isinstance(goto, list) else [goto]
        sends = [Send(t["node"], t.get("input")) if isinstance(t, dict) else t for t in targets]
        arguments["goto"] = sends if isinstance(goto, list) else sends[0]
    return Command(**arguments)


def describe_error(exc: BaseException) -> dict[str, str]:
    """`{"error", "message"}` for a client: the server's own failures say less."""
    name = type(exc).__name__
    if type(exc).__module__.startswith(INTERNAL_MODULES):
        return {"error": name, "message": INTERNAL_MESSAGE}
    # jsonb-storable: the run's error is stored, and an exception's text may hold a NUL.
    return jsonb_storable({"error": name, "message": str(exc) or name})


def stream_modes_of(plan: RunPlan) -> list[str]:
    """The LangGraph stream modes a run streams."""
    return langgraph_modes(plan.stream_modes) or ["values"]


async def stream_graph(
    graph: Pregel, plan: RunPlan, publisher: EventPublisher, final: FinalState | None = None
) -> None:
    """Run the graph to its end, emitting the events the client asked for; the root's `values`
    chunks go to `final` too.

    LangGraph streams subgraphs' parts only when the client asked for them (`subgraphs`), as
    the LangGraph server asks. Asked for (or with the `messages` or `custom` mode), every node
    runs in a task of its own while a waiter task reads the stream; otherwise a step of one
    node runs inline. Without `subgraphs` the parts come as `(mode, chunk)`, no namespace."""
    translator = ChunkTranslator(plan.stream_modes)
    modes = stream_modes_of(plan)
    options = {"stream_mode": modes, "subgraphs": plan.subgraphs, **plan.stream_kwargs}

    def emit_part(part: tuple[Any, ...]) -> None:
        if len(part) == 2:
            namespace, (mode, chunk) = (), part
        else:
            namespace, mode, chunk = part
        if not namespace and mode == "values" and final is not None:
            final.see(chunk)
        for name, payload in translator.translate(tuple(namespace), mode, chunk):
            publisher.emit(name, payload)

    if not plan.wants_events:
        async for part in graph.astream(plan.input, plan.config, **options):
            emit_part(part)
        return
    root = str(plan.config["run_id"])
    async for event in graph.astream_events(plan.input, plan.config, version="v2", **options):
        if event["event"] == "on_chain_stream" and event["run_id"] == root:
            emit_part(event["data"]["chunk"])
        elif "langsmith:hidden" not in (event.get("tags") or ()):
            publisher.emit("events", event)


async def execute_run(run: Run, *, cancel: CancelSignal) -> RunOutcome | None:
    """Execute a claimed run to its end; returns its outcome (None: the run was lost)."""
    publisher = EventPublisher(run)
    publisher.start()
    writer = JournalWriter(run)
    writer.start()
    journal = RunJournal(writer)
    journal.record_start(run)
    graph: Pregel | None = None
    final: FinalState | None = None
    try:
        graph = await graph_for_thread(run.graph_id)
        plan = plan_run(run, [journal])
        final = FinalState(graph, modes=stream_modes_of(plan), config=plan.config)
        stopped_by = await _run_graph(stream_graph(graph, plan, publisher, final), plan, cancel)
        outcome = await _outcome_of_cancel(run, stopped_by)
        if stopped_by:
            final = None
    except Exception as exc:
        # The traceback as text, the run's secret values taken out (a graph's error may quote
        # its config).
        logger.error(
            "run %s (graph %s) failed\n%s",
            run.pk,
            run.graph_id,
            publisher.redactor.redact_text(traceback.format_exc()),
        )
        outcome = RunOutcome(status=Run.Status.ERROR, error=describe_error(exc))
        final = None
    except asyncio.CancelledError:  # the worker itself is being torn down
        publisher.abort()
        writer.abort()
        raise
    if cancel.action == CancelReason.LOST:
        logger.warning("run %s: lease lost, another worker or the reaper ended it", run.pk)
        writer.abort()  # the reaper has written the run's end
        await publisher.close()
        return None
    if outcome.error is not None:  # stored on the run and shown: no secret in its message
        outcome = dataclasses.replace(outcome, error=publisher.redactor.redact(outcome.error))
        publisher.emit("error", outcome.error)
    # A run that stopped at interrupt() or a breakpoint ended `success`; its thread is
    # `interrupted` (the snapshot waits). A run `interrupted` is one a user cancelled. A run
    # that went to its end knows its thread's state (`final`); any other reads it.
    snapshot = final.snapshot(paused=journal.paused) if final is not None else None
    if snapshot is None and graph is not None:
        snapshot = await _snapshot(graph, run)
    unwritten = await writer.close()
    unwritten.entries.append(
        writer.redacted(
            run_ended(
                status=outcome.status,
                error=outcome.error,
                cancel_action=outcome.cancel_action,
                rolled_back=outcome.rolled_back,
            )
        )
    )
    await publisher.drain()
    finished = await call_sync(
        finish_run,
        run=run,
        outcome=outcome,
        snapshot=snapshot,
        journal=unwritten,
        on=Executor.ENGINE,
    )
    if finished:
        if snapshot is not None:  # the thread's values as just committed, for `/wait`
            final = {
                "status": outcome.status,
                "error": outcome.error,
                "values": snapshot.values,
                "interrupts": snapshot.interrupts,
            }
            answers.offer(run.pk, **final)  # for requests of this process
            publisher.answer = functools.partial(answers.layer_answer, **final)  # of others
        publisher.emit("end", None)
    await publisher.close()
    return outcome if finished else None


async def _run_graph(work: Coroutine[Any, Any, None], plan: RunPlan, cancel: CancelSignal) -> str:
    """`_run_unless_cancelled`, and with LangGraph's "async" durability (the default) the run's
    checkpoint writes handed to the saver's thread without a wait each: all of them are
    committed before this returns (so before the run's end is recorded), and the first that
    failed is raised (the run fails) unless the run was cancelled (then it is logged)."""
    if plan.stream_kwargs.get("durability", "async") != "async":
        return await _run_unless_cancelled(work, cancel)
    writes = RunWrites()
    try:
        with defer_writes(writes):
            stopped_by = await _run_unless_cancelled(work, cancel)
    except Exception:
        await writes.settle(raise_error=False)
        raise
    await writes.settle(raise_error=not stopped_by)
    return stopped_by


async def _run_unless_cancelled(work: Coroutine[Any, Any, None], cancel: CancelSignal) -> str:
    """Await the graph, or stop it as soon as a cancel arrives: returns the cancel action
    ("" when the graph ran to its end) and raises the graph's exception. A cancel that came
    before never starts the graph.

    The graph has a task of its own, so that the run's end never waits for a graph that does
    not unwind (a node blocked in sync code, or one that swallows its cancellations): once
    cancelled, the graph has `CANCEL_GRACE_SECONDS`, then the run ends without it."""
    if cancel.is_set():
        work.close()
        return cancel.action
    graph_task = asyncio.ensure_future(work)
    cancelled = cancel.future()
    try:
        await asyncio.wait({graph_task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        graph_task.cancel()
        raise
    finally:
        cancelled.cancel()
    if graph_task.done():
        graph_task.result()
        return ""
    graph_task.cancel()
    # A node stuck in sync code cannot be cancelled: the run ends anyway after a grace period.
    done, _ = await asyncio.wait({graph_task}, timeout=CANCEL_GRACE_SECONDS)
    if not done:
        logger.warning("a cancelled graph is still unwinding after %ss", CANCEL_GRACE_SECONDS)
    elif not graph_task.cancelled() and graph_task.exception() is not None:
        logger.info("a cancelled graph stopped with %r", graph_task.exception())
    return cancel.action


async def _outcome_of_cancel(run: Run, action: str) -> RunOutcome:
    if action == "":
        return RunOutcome(status=Run.Status.SUCCESS)
    if action == CancelReason.SHUTDOWN:
        return RunOutcome(status=Run.Status.ERROR, error=WORKER_SHUTDOWN)
    if action == CancelReason.ROLLBACK:
        await adelete_run_checkpoints(run.thread_id, str(run.run_id))
        return RunOutcome(status=Run.Status.INTERRUPTED, rolled_back=True, cancel_action=action)
    # interrupt (and lost, dropped by the caller)
    return RunOutcome(status=Run.Status.INTERRUPTED, cancel_action=action)


async def _snapshot(graph: Pregel, run: Run) -> ThreadSnapshot | None:
    try:
        return await snapshot_of(graph, run.thread_id)
    except Exception:
        logger.exception("run %s: cannot read the thread's state after the run", run.pk)
        return None
