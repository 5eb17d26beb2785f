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
        """The checkpoints, newest first, read in one call (the API's history pages pass a
        `limit`; a thread's copy needs every one anyway)."""
        found = await self._call(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for checkpoint in found:
            yield checkpoint

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
