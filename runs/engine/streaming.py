"""From LangGraph's stream to SSE events: mode names, namespaces, numbering and publishing.

Clients name stream modes as the LangGraph server does; LangGraph names them a little
differently (`messages-tuple` and legacy `messages` both come from LangGraph's `messages`).
Events are numbered 1, 2, 3… per run, stored first when the run is resumable, and published
(`publishing`: to this process's subscribers directly, to others' through the bus) by a task of
their own, so that a slow bus never stalls the graph.
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from langchain_core.messages import BaseMessage, BaseMessageChunk, message_chunk_to_message

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.redaction import Redactor
from runs.engine import answers, bus, publishing
from runs.engine.serialization import to_jsonable
from runs.models import Run, RunStreamEvent

logger = logging.getLogger(__name__)

#: Modes LangGraph streams under the same name as the client's.
NATIVE_MODES = frozenset({"values", "updates", "custom", "debug", "tasks", "checkpoints", "tools"})


def langgraph_modes(client_modes: list[str]) -> list[str]:
    """The LangGraph stream modes that produce the client's modes (`events` aside)."""
    modes: list[str] = []
    for mode in client_modes:
        native = "messages" if mode in ("messages", "messages-tuple") else mode
        if native in NATIVE_MODES | {"messages"} and native not in modes:
            modes.append(native)
    return modes


def event_name(name: str, namespace: tuple[str, ...]) -> str:
    """`mode` at the root, `mode|parent:task|child:task` inside subgraphs."""
    return "|".join((name, *namespace)) if namespace else name


class ChunkTranslator:
    """Turns LangGraph `(namespace, mode, chunk)` parts into `(event name, payload)` pairs."""

    def __init__(self, client_modes: list[str]) -> None:
        self.tuples = "messages-tuple" in client_modes
        self.legacy_messages = "messages" in client_modes
        self.client_modes = set(client_modes)
        # legacy `messages` mode: the message so far, by id, to send it whole each time
        self._partial: dict[str, BaseMessageChunk] = {}

    def translate(self, namespace: tuple[str, ...], mode: str, chunk: Any) -> list[tuple[str, Any]]:
        if mode != "messages":
            return [(event_name(mode, namespace), chunk)] if mode in self.client_modes else []
        events: list[tuple[str, Any]] = []
        if self.tuples:
            events.append((event_name("messages", namespace), chunk))
        if self.legacy_messages:
            events.extend(self._legacy(namespace, *chunk))
        return events

    def _legacy(
        self, namespace: tuple[str, ...], message: BaseMessage, metadata: dict[str, Any]
    ) -> list[tuple[str, Any]]:
        """`messages/metadata` once per message, then `messages/partial` or `/complete`."""
        events: list[tuple[str, Any]] = []
        message_id = message.id or ""
        if message_id not in self._partial:
            events.append(
                (
                    event_name("messages/metadata", namespace),
                    {message_id: {"metadata": metadata}},
                )
            )
        if isinstance(message, BaseMessageChunk):
            so_far = self._partial.get(message_id)
            so_far = message if so_far is None else so_far + message
            self._partial[message_id] = so_far
            whole = message_chunk_to_message(so_far)
            events.append((event_name("messages/partial", namespace), [whole]))
        else:
            self._partial.setdefault(message_id, message)  # type: ignore[arg-type]
            events.append((event_name("messages/complete", namespace), [message]))
        return events


class EventPublisher:
    """Numbers a run's events and publishes them in order, off the graph's path: the events
    emitted in one turn of the event loop go together, in the next. When nothing but this
    process's listeners needs them (a run not resumable, a channel layer that reaches no other
    process) they are handed to them then, in a callback; otherwise a task publishes batch after
    batch for as long as events come (storing them first for a resumable run). Those that no one
    can hear then (no listener of the run's stream or its thread's in this process) are only
    numbered."""

    def __init__(self, run: Run) -> None:
        self.run_id: UUID = run.pk
        self.thread_id: str = run.thread_id
        self.resumable = run.resumable
        self.redactor = Redactor.for_run(run.kwargs)
        self.last_id = 0
        self._pending: list[bus.StreamEvent] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_due = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Whether an event no listener of this process hears reaches no one (set by `start`).
        self._drops_unheard = False
        #: Makes the run's final answer for its `end` (`answers.layer_answer`), set before it.
        self.answer: Callable[[], bytes | None] | None = None

    def start(self) -> None:
        """Publish from now on, on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._drops_unheard = not self.resumable and not bus.reaches_other_processes()
        publishing.forget_run(self.run_id)  # the first batch looks the groups' members up

    def emit(self, name: str, payload: Any) -> None:
        """Queue one event (serialised now: the graph may change its objects later), the run's
        secret values taken out (the `debug`, `checkpoints` and `events` modes carry its config).

        An event no one can receive (a run not resumable, no listener of its stream or its
        thread's in this process, a layer that reaches no other process: a `/wait`'s run) is
        numbered and dropped, not serialised; its `end` always goes."""
        if (
            self._drops_unheard
            and name != bus.END
            and not publishing.listened_here(run_id=self.run_id, thread_id=self.thread_id)
        ):
            self.last_id += 1
            return
        if self.redactor:
            payload = self.redactor.redact(to_jsonable(payload))
        self.last_id += 1
        self._pending.append(bus.StreamEvent.of(self.last_id, name, payload))
        if not (self._flush_due or self._task is not None or self._stopped or self._loop is None):
            self._flush_due = True
            self._loop.call_soon(self._flush)

    async def drain(self) -> None:
        """Wait until every event emitted so far is stored and published."""
        self._flush()
        if self._task is not None:
            await asyncio.wait({self._task})  # a cancelled caller leaves the task be

    async def close(self) -> None:
        """`drain`, then publish no more."""
        await self.drain()
        self._stopped = True
        publishing.forget_run(self.run_id)

    def abort(self) -> None:
        """Stop publishing at once (what is still queued is dropped)."""
        self._stopped = True
        self._pending = []
        publishing.forget_run(self.run_id)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _flush(self) -> None:
        self._flush_due = False
        if self._stopped or self._task is not None or not self._pending:
            return
        if not self.resumable and publishing.publish_events_here(
            run_id=self.run_id, thread_id=self.thread_id, events=self._pending
        ):
            self._pending = []
            return
        assert self._loop is not None
        self._task = self._loop.create_task(
            self._publish_while_pending(), name=f"publish-{self.run_id}"
        )

    async def _publish_while_pending(self) -> None:
        try:
            while self._pending:
                events, self._pending = self._pending, []
                try:
                    await self._publish(events)
                except Exception:  # the bus is not the record: a lost event costs a client
                    logger.exception("run %s: cannot publish stream events", self.run_id)
        finally:
            self._task = None

    async def _publish(self, events: list[bus.StreamEvent]) -> None:
        if self.resumable:
            try:
                stored = await call_sync(
                    store_stream_events, self.run_id, events, on=Executor.ENGINE
                )
            except Exception:
                logger.exception("run %s: cannot store stream events", self.run_id)
            else:
                if not stored:
                    logger.info(
                        "run %s was deleted: its last stream events are not stored", self.run_id
                    )
        # The bus is not the record: a lost event costs a client, not a run (logged there).
        await publishing.publish_events(
            run_id=self.run_id,
            thread_id=self.thread_id,
            events=events,
            answer=self.answer,
            publisher=True,
        )


def store_stream_events(run_id: UUID, events: list[bus.StreamEvent]) -> bool:
    """Store a resumable run's events (those already stored, by seq, are skipped); False, with
    nothing stored, when the run is gone: deleted with its thread once it ended (a cancelled run
    may still be sending its last events). Any other failure raises."""
    try:
        with transaction.atomic():
            RunStreamEvent.objects.bulk_create(
                [
                    RunStreamEvent(run_id=run_id, seq=e.id, event=e.event, data=e.data)
                    for e in events
                ],
                ignore_conflicts=True,
            )
    except IntegrityError:
        if Run.objects.filter(pk=run_id).exists():
            raise
        return False
    return True


def expired_stream_events(
    *, now: datetime | None = None, retention_seconds: float | None = None
) -> QuerySet[RunStreamEvent]:
    """Stored events of runs that ended more than `retention_seconds` (default
    STREAM_RETENTION_SECONDS) ago. (An event is never younger than its run's end, so its own
    indexed `created_at` narrows the search to what is old enough.)"""
    if retention_seconds is None:
        retention_seconds = settings.STREAM_RETENTION_SECONDS
    cutoff = (now or timezone.now()) - timedelta(seconds=retention_seconds)
    return RunStreamEvent.objects.filter(created_at__lt=cutoff, run__ended_at__lt=cutoff)


def purge_stream_events(*, now: datetime | None = None) -> int:
    """Delete the stored events past their retention; returns how many went."""
    deleted, _ = expired_stream_events(now=now).delete()
    return deleted


def out_of_band_events(events: list[tuple[str, Any]]) -> list[bus.StreamEvent]:
    """Events about a run from outside its executor (a reaper, a cancel of a pending run),
    numbered past anything its executor can have used."""
    first_id = bus.out_of_band_event_id()
    return [
        bus.StreamEvent.of(first_id + offset, name, payload)
        for offset, (name, payload) in enumerate(events)
    ]


async def publish_stream_events(
    *, run: Run, events: list[bus.StreamEvent], error: dict[str, str] | None = None
) -> None:
    """Publish events made with `out_of_band_events` (stored first by the caller if resumable).
    `error`: the run ended `error` with it (the reaper): its answer (`answers`) is left for the
    requests of this process that wait for it and sent with its `end` to other processes', so
    that none reads it back from a database that may no longer hold the run (a stateless
    thread deleted with its runs as the run ended)."""
    answer = None
    if error is not None:
        ended = {"status": Run.Status.ERROR, "error": error, "values": None, "interrupts": {}}
        answers.offer(run.pk, **ended)
        answer = functools.partial(answers.layer_answer, **ended)
    await publishing.publish_events(
        run_id=run.pk, thread_id=run.thread_id, events=events, answer=answer
    )
