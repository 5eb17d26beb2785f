"""The async methods shared by our checkpoint savers (`sqlite_saver`, `postgres_saver`): each
operation of LangGraph's sync saver underneath, its statements and its commit, as one call on
the saver's `deerflow_site.bridge.SerialThread`, which owns the connection.

The thread runs the calls one at a time, in order, and a call once made runs to its end: a
checkpoint write finishes even when its run is cancelled meanwhile, and a rollback made after a
write finds what it wrote.
"""

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)

from deerflow_site.bridge import SerialThread

T = TypeVar("T")

#: Checkpoints read per call by `alist` (each holds its channels' values: a page bounds the
#: memory a long history takes at once).
LIST_PAGE = 100


class SerialSaverMethods:
    """LangGraph's async saver methods, each one call on `thread` (listed first among a saver's
    bases, so that they replace the sync saver's). A saver sets `thread` and `bound_graphs`
    (graph id -> the graph bound to it: registry.graph_for_thread's cache), and may override
    `_call` (how an operation runs on the thread) and `_close` (what closing does there)."""

    thread: SerialThread
    bound_graphs: dict[str, Any]
    conn: Any

    # LangGraph's sync saver methods, from the saver's other base.
    get_tuple: Callable[..., CheckpointTuple | None]
    list: Callable[..., Any]
    put: Callable[..., RunnableConfig]
    put_writes: Callable[..., None]
    delete_thread: Callable[..., None]
    get_delta_channel_history: Callable[..., Mapping[str, DeltaChannelHistory]]

    async def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await self.thread.call(fn, *args, **kwargs)

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
        return await self._call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
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
            self.thread.stop()

    def abandon(self) -> None:
        """`aclose` without waiting: for a saver whose event loop is closed."""
        self.thread.submit(self._close)
        self.thread.stop()


def _key(checkpoint: CheckpointTuple) -> tuple[str, str, str]:
    """(thread id, namespace, checkpoint id): a checkpoint's key."""
    configurable = checkpoint.config["configurable"]
    return (
        configurable["thread_id"],
        configurable.get("checkpoint_ns", ""),
        configurable["checkpoint_id"],
    )
