"""Recording a run's journal while it executes, off the graph's path.

`RunJournal` is a LangChain callback handler: chat model answers, tool results and model errors
become events the moment they happen, appended to an in-memory batch (no I/O on the graph's
path). `JournalWriter` writes the batch from a task of its own every JOURNAL_FLUSH_SECONDS (or
at JOURNAL_BATCH_SIZE events), so a slow database delays the journal, never the stream. What is
left at the end goes into the transaction that persists the run's final status.
"""

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from typing import Any
from uuid import UUID

from django.conf import settings
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    ToolMessage,
    convert_to_messages,
    message_chunk_to_message,
)
from langchain_core.outputs import LLMResult
from langgraph.callbacks import GraphCallbackHandler, GraphInterruptEvent
from langgraph.types import Command

from deerflow_site.bridge import Executor, call_sync
from deerflow_site.redaction import Redactor
from runs.engine.serialization import to_jsonable
from runs.journal.catalog import EventType
from runs.journal.lifecycle import run_started
from runs.journal.store import (
    MAX_TOKENS,
    JournalBatch,
    JournalEntry,
    ModelUsage,
    clamp_count,
    record_batch,
)
from runs.models import Run

logger = logging.getLogger(__name__)

UNKNOWN_MODEL = "unknown"


class JournalWriter:
    """Buffers a run's journal and writes it in batches, each from a task of its own, started
    JOURNAL_FLUSH_SECONDS after the first event of the batch (at once at JOURNAL_BATCH_SIZE
    events): a run shorter than that writes nothing before its end, and needs no task."""

    def __init__(self, run: Run) -> None:
        self.run_id: UUID = run.pk
        self.thread_id: str = run.thread_id
        self.redactor = Redactor.for_run(run.kwargs)
        self._batch = JournalBatch()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Write from now on, on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def add(self, entry: JournalEntry, usage: tuple[str, ModelUsage] | None = None) -> None:
        """Buffer one event (and the usage of the model call it reports), the run's secret
        values taken out. From any thread (a sync node's callbacks run on the node's)."""
        self._batch.entries.append(self.redacted(entry))
        if usage is not None:
            model_name, model_usage = usage
            self._batch.usage.setdefault(model_name, ModelUsage()).add(model_usage)
        if self._loop is None or self._stopped:
            return
        if threading.get_ident() == self._loop_thread:
            self._schedule()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: the run is gone
                self._loop.call_soon_threadsafe(self._schedule)

    def redacted(self, entry: JournalEntry) -> JournalEntry:
        """`entry` without the run's secret values (deerflow_site.redaction's rule)."""
        if not self.redactor:
            return entry
        return dataclasses.replace(
            entry,
            content=self.redactor.redact(to_jsonable(entry.content)),
            metadata=self.redactor.redact(to_jsonable(entry.metadata)),
        )

    async def close(self) -> JournalBatch:
        """Stop writing (after the write in progress); returns what is still unwritten, for
        the caller to write with the run's end."""
        self._stop()
        if self._writing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
        return self._take()

    def abort(self) -> None:
        """Stop at once, dropping what is unwritten (the run is no longer this worker's)."""
        self._stop()
        if self._writing is not None:
            self._writing.cancel()
        self._batch = JournalBatch()

    def _stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _take(self) -> JournalBatch:
        batch, self._batch = self._batch, JournalBatch()
        return batch

    def _schedule(self) -> None:
        """On the loop: a write of the batch now if it is full, else after the flush delay,
        unless one is due or in progress already (it looks again when it ends)."""
        if self._stopped or self._writing is not None or not self._batch:
            return
        assert self._loop is not None
        if len(self._batch.entries) >= settings.JOURNAL_BATCH_SIZE:
            if self._timer is not None:
                self._timer.cancel()
            self._write_now()
        elif self._timer is None:
            self._timer = self._loop.call_later(settings.JOURNAL_FLUSH_SECONDS, self._write_now)

    def _write_now(self) -> None:
        self._timer = None
        if self._stopped or self._writing is not None:
            return
        assert self._loop is not None
        self._writing = self._loop.create_task(
            self._write(self._take()), name=f"journal-{self.run_id}"
        )

    async def _write(self, batch: JournalBatch) -> None:
        written = False
        try:
            if batch:
                await call_sync(self._record, batch, on=Executor.ENGINE)
            written = True
        except Exception:
            # Kept for the next write (at the latest, the one with the run's end).
            logger.exception("run %s: cannot write its journal yet", self.run_id)
            batch.extend(self._batch)
            self._batch = batch
        finally:
            self._writing = None
        if written:  # what came meanwhile; after a failure, the next event tries again
            self._schedule()

    def _record(self, batch: JournalBatch) -> None:
        """Write `batch`; one the database or the JSON encoder refuses is written again with
        its values made storable (`JournalBatch.storable`), logged."""
        try:
            record_batch(thread_id=self.thread_id, run_id=self.run_id, batch=batch)
        except Exception:
            logger.exception("run %s: its journal as it was could not be written", self.run_id)
            record_batch(thread_id=self.thread_id, run_id=self.run_id, batch=batch.storable())


class RunJournal(GraphCallbackHandler):
    """Turns a run's model calls and tool results into journal events (cheap, in the loop),
    and notes whether the graph paused (`paused`: LangGraph's `on_interrupt` at the root, for
    an `interrupt()` or a breakpoint), which the run's end reads."""

    run_inline = True
    # Chains, retrievers, retries and custom events are not journalled: langchain_core skips
    # this handler for them (for every runnable of a graph's nodes) instead of calling a no-op.
    # Model (`llm`, `chat_model`) and tool (`agent`) events are.
    ignore_chain = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, writer: JournalWriter) -> None:
        self.writer = writer
        self.paused = False
        # per model call: when it started (monotonic seconds) and the model's name
        self._calls: dict[UUID, tuple[float, str]] = {}

    def on_interrupt(self, event: GraphInterruptEvent) -> None:
        self.paused = True

    def record_start(self, run: Run) -> None:
        """`run.start`, then the human messages of the run's input."""
        self.writer.add(run_started(run))
        for message in human_messages((run.kwargs or {}).get("input")):
            self.writer.add(JournalEntry(EventType.HUMAN_INPUT, content=to_jsonable(message)))

    # --- Chat models --------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_call(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_call(run_id, metadata)

    def _start_call(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        model_name = str((metadata or {}).get("ls_model_name") or UNKNOWN_MODEL)
        self._calls[run_id] = (time.monotonic(), model_name)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        started, model_name = self._calls.pop(run_id, (time.monotonic(), UNKNOWN_MODEL))
        latency_ms = round((time.monotonic() - started) * 1000, 3)
        for generations in response.generations:
            for generation in generations:
                message = getattr(generation, "message", None)
                if message is None:
                    continue
                if isinstance(message, BaseMessageChunk):
                    message = message_chunk_to_message(message)
                self._record_answer(message, model_name, latency_ms)

    def _record_answer(self, message: BaseMessage, model_name: str, latency_ms: float) -> None:
        model_name = str(message.response_metadata.get("model_name") or model_name)
        usage = dict(getattr(message, "usage_metadata", None) or {})
        # What a model reports is taken within the columns' range, whatever it is.
        counts = ModelUsage(
            input_tokens=clamp_count(usage.get("input_tokens"), MAX_TOKENS),
            output_tokens=clamp_count(usage.get("output_tokens"), MAX_TOKENS),
            total_tokens=clamp_count(usage.get("total_tokens"), MAX_TOKENS),
            llm_calls=1,
        )
        if not counts.total_tokens:
            counts.total_tokens = min(counts.input_tokens + counts.output_tokens, MAX_TOKENS)
        metadata = {
            "model_name": model_name,
            "usage": {
                "input_tokens": counts.input_tokens,
                "output_tokens": counts.output_tokens,
                "total_tokens": counts.total_tokens,
            },
            "latency_ms": latency_ms,
        }
        self.writer.add(JournalEntry(EventType.AI_RESPONSE, to_jsonable(message), metadata))
        self.writer.add(
            JournalEntry(EventType.LLM_CALL, metadata={**metadata, "message_id": message.id}),
            usage=(model_name, counts),
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        started, model_name = self._calls.pop(run_id, (time.monotonic(), UNKNOWN_MODEL))
        metadata = {
            "model_name": model_name,
            "latency_ms": round((time.monotonic() - started) * 1000, 3),
        }
        content = {"error": type(error).__name__, "message": str(error)}
        self.writer.add(JournalEntry(EventType.LLM_ERROR, content=content, metadata=metadata))

    # --- Tools --------------------------------------------------------------------------

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        for message in tool_messages(output):
            self.writer.add(JournalEntry(EventType.TOOL_RESULT, content=to_jsonable(message)))


def human_messages(graph_input: Any) -> list[BaseMessage]:
    """The human messages of a run's input (`{"messages": [...]}`, or one message); none for
    anything else."""
    given = graph_input.get("messages") if isinstance(graph_input, dict) else None
    if isinstance(given, str | dict):
        given = [given]
    if not isinstance(given, list):
        return []
    try:
        messages = convert_to_messages(given)
    except (ValueError, TypeError, KeyError, NotImplementedError):
        return []  # the graph will say what is wrong with them
    return [message for message in messages if isinstance(message, HumanMessage)]


def tool_messages(output: Any) -> list[ToolMessage]:
    """The tool results in a tool's output: a ToolMessage, or those of a Command's update."""
    if isinstance(output, ToolMessage):
        return [output]
    if isinstance(output, Command) and isinstance(output.update, dict):
        update = output.update.get("messages")
        return [m for m in update or () if isinstance(m, ToolMessage)]
    return []
