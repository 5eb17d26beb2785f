"""The async methods shared by our checkpoint savers (`sqlite_saver`, `postgres_saver`): each
operation of LangGraph's sync saver underneath, its statements and its commit, as one call on
the saver's `deerflow_site.bridge.SerialThread`, which owns the connection.

The thread runs the calls one at a time, in order, and a call once made runs to its end: a
checkpoint write finishes even when its run is cancelled meanwhile, and a rollback made after a
write finds what it wrote.

Within a run that `defer_writes` covers (the worker's, with LangGraph's "async" durability), a
checkpoint write (`aput`, `aput_writes`) is handed to the thread without waiting for it: the
same call, queued in the same order (any later call, a read included, runs after it), with the
same return value. Its failure is held for the run (`RunWrites`), raised by the run's next
awaited call of the saver and by `RunWrites.settle`, which the worker awaits before it records
the run's end. Anything else (the API's state updates, copies, rollbacks) is awaited as before.
"""

import contextlib
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from deerflow_site.bridge import SerialThread

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: Checkpoints read per call by `alist` (each holds its channels' values: a page bounds the
#: memory a long history takes at once).
LIST_PAGE = 100


class RunWrites:
    """One run's checkpoint writes handed to savers' threads without a wait (`defer_writes`).

    `error`: the first of them that failed (None while none did); written on a saver's thread,
    read on the event loop once `settle` waited for it or at the run's next awaited call."""

    def __init__(self) -> None:
        self.open = True  # False once settled: later writes are awaited
        self.error: BaseException | None = None
        self._handed = 0  # counted on the event loop
        self._done = 0  # counted on the saver's thread
        self._threads: set[SerialThread] = set()

    def hand(self, thread: SerialThread, fn: Callable[[], Any]) -> None:
        """Queue `fn()` on `thread`, not waited for. RuntimeError once the thread is stopped."""
        if not thread.submit(functools.partial(self._run, fn)):
            raise RuntimeError("the checkpoint saver's thread is stopped")
        self._handed += 1
        self._threads.add(thread)

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except BaseException as exc:  # held for the run, as an awaited call would raise it
            if self.error is None:
                self.error = exc
        finally:
            self._done += 1

    async def settle(self, *, raise_error: bool = True) -> None:
        """Wait until every write handed over so far is committed (or failed): one call on
        each thread they went to, none when all are done. Later writes of the run are awaited
        one by one. Raises the first write's failure when `raise_error`, else logs it."""
        self.open = False
        if self._done < self._handed:
            for thread in self._threads:
                await thread.call(_after_writes)
        if self.error is not None:
            if raise_error:
                raise self.error
            logger.error("a write of a failed or cancelled run failed", exc_info=self.error)


_run_writes: contextvars.ContextVar[RunWrites | None] = contextvars.ContextVar(
    "run_writes", default=None
)


@contextlib.contextmanager
def defer_writes(writes: RunWrites) -> Iterator[None]:
    """Within this block (and the tasks it starts, which copy its context), savers hand their
    checkpoint writes to `writes` instead of awaiting each one."""
    token = _run_writes.set(writes)
    try:
        yield
    finally:
        _run_writes.reset(token)


def _after_writes() -> None:
    return None


class UnreadableCheckpoint(Exception):
    """A stored checkpoint holds a value its saver's serializer cannot load (damaged, or written
    by an older version of a library): the message names its type and the loader's error."""


class CheckpointSerializer(JsonPlusSerializer):
    """LangGraph's serializer, whose load failures, whatever the format's own exception, are
    UnreadableCheckpoint (what a thread's state reads answer or leave out)."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        try:
            return super().loads_typed(data)
        except Exception as exc:
            kind = data[0] if isinstance(data, tuple) and data else "?"
            raise UnreadableCheckpoint(
                f"a stored value of type {kind!r} cannot be loaded ({type(exc).__name__}: {exc})"
            ) from exc


class _LoadingNothing(CheckpointSerializer):
    """Loads every value as None: what lists checkpoints without their values."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return None


class SerialSaverMethods:
    """LangGraph's async saver methods, each one call on `thread` (listed first among a saver's
    bases, so that they replace the sync saver's). A saver sets `thread` and `bound_graphs`
    (graph id -> the graph bound to it: registry.graph_for_thread's cache), and may override
    `_call` (how an operation runs on the thread) and `_close` (what closing does there)."""

    thread: SerialThread
    #: Whether closing the saver ends `thread` (False: a thread shared with others).
    owns_thread: bool = True
    bound_graphs: dict[str, Any]
    conn: Any
    serde: Any

    # LangGraph's sync saver methods, from the saver's other base.
    get_tuple: Callable[..., CheckpointTuple | None]
    list: Callable[..., Any]
    put: Callable[..., RunnableConfig]
    put_writes: Callable[..., None]
    delete_thread: Callable[..., None]
    get_delta_channel_history: Callable[..., Mapping[str, DeltaChannelHistory]]

    def _op(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """`fn(*args, **kwargs)` on the saver's thread (a saver may prepare its connection)."""
        return fn(*args, **kwargs)

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        writes = _run_writes.get()
        if writes is not None and writes.open and writes.error is not None:
            raise writes.error
        return await self.thread.call(self._op, fn, args, kwargs)

    def _deferred(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Hand `fn(*args)` over without a wait when a run defers its writes; False otherwise
        (the caller awaits it)."""
        writes = _run_writes.get()
        if writes is None or not writes.open:
            return False
        writes.hand(self.thread, functools.partial(self._op, fn, args, {}))
        return True

    def _close(self) -> None:
        self.conn.close()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._call(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The checkpoints, newest first (by checkpoint id), read LIST_PAGE at a time: one call
        per page, each page after the last id of the one before (`before`). The checkpoints of
        other namespaces sharing a page's last id are read with it, so no page boundary skips
        one. The API's history pages pass a `limit` and take one call."""
        remaining = limit
        while remaining is None or remaining > 0:
            size = LIST_PAGE if remaining is None else min(LIST_PAGE, remaining)
            page = await self._call(self._list_page, config, filter, before, size)
            for checkpoint in page:
                yield checkpoint
            if remaining is not None:
                remaining -= len(page)
            if len(page) < size or (remaining is not None and remaining <= 0):
                return
            last_id = page[-1].config["configurable"]["checkpoint_id"]
            ties = await self._call(self._ties, config, filter, last_id, page)
            for checkpoint in ties[:remaining]:
                yield checkpoint
            if remaining is not None:
                remaining -= len(ties)
            before = {"configurable": {"checkpoint_id": last_id}}

    async def alist_ids(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int,
    ) -> list[str]:
        """The ids of the (at most `limit`) checkpoints `alist` yields first, newest first, read
        without their values (one of them may not load: UnreadableCheckpoint)."""
        return await self._call(self._list_ids, config, filter, before, limit)

    def _list_ids(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int,
    ) -> list[str]:
        serde, self.serde = self.serde, _LoadingNothing()  # on the saver's thread: no other call
        try:
            listed = self.list(config, filter=filter, before=before, limit=limit)
            return [checkpoint.config["configurable"]["checkpoint_id"] for checkpoint in listed]
        finally:
            self.serde = serde

    def _list_page(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        size: int,
    ) -> list[CheckpointTuple]:
        return list(self.list(config, filter=filter, before=before, limit=size))

    def _ties(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        checkpoint_id: str,
        page: list[CheckpointTuple],
    ) -> list[CheckpointTuple]:
        """The checkpoints with `checkpoint_id` (in other namespaces) that `page` lacks (none
        looked for across threads: LangGraph's savers filter by id only within a thread)."""
        configurable = dict((config or {}).get("configurable") or {})
        if "thread_id" not in configurable:
            return []
        if configurable.get("checkpoint_id") not in (None, checkpoint_id):
            return []
        configurable["checkpoint_id"] = checkpoint_id
        listed = {_key(checkpoint) for checkpoint in page}
        return [
            checkpoint
            for checkpoint in self.list({"configurable": configurable}, filter=filter)
            if _key(checkpoint) not in listed
        ]

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        if not self._deferred(self.put, config, checkpoint, metadata, new_versions):
            return await self._call(self.put, config, checkpoint, metadata, new_versions)
        # What LangGraph's savers' `put` returns.
        return {
            "configurable": {
                "thread_id": config["configurable"]["thread_id"],
                "checkpoint_ns": config["configurable"]["checkpoint_ns"],
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not self._deferred(self.put_writes, config, writes, task_id, task_path):
            await self._call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._call(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._call(self.get_delta_channel_history, config=config, channels=channels)

    async def aclose(self) -> None:
        """Close the connection after the calls made before it (writes in flight), then end
        the thread."""
        try:
            await self.thread.call(self._close)
        finally:
            if self.owns_thread:
                self.thread.stop()

    def abandon(self) -> None:
        """`aclose` without waiting: for a saver whose event loop is closed."""
        self.thread.submit(self._close)
        if self.owns_thread:
            self.thread.stop()


def _key(checkpoint: CheckpointTuple) -> tuple[str, str, str]:
    """(thread id, namespace, checkpoint id): a checkpoint's key."""
    configurable = checkpoint.config["configurable"]
    return (
        configurable["thread_id"],
        configurable.get("checkpoint_ns", ""),
        configurable["checkpoint_id"],
    )
