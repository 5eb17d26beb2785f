"""A thread's state through its graph: read it, its history, update it, copy its checkpoints.

The shapes are the LangGraph server's (`ThreadState`, `ThreadTask`, `Checkpoint` in the SDK's
schema.py). The graph of a thread is `thread.metadata["graph_id"]`, stamped when a run is created.
What the thread row mirrors of the state is written by the callers (`threads.state`).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot

from deerflow_site.errors import BadRequest, Invalid
from deerflow_site.redaction import redact_secrets
from runs.engine import checkpoints, registry
from runs.engine.errors import (
    AssistantNotFound,
    CheckpointNotFound,
    DamagedCheckpoint,
    GraphNotRegistered,
    UnknownBeforeCheckpoint,
)
from runs.engine.finish import ThreadSnapshot, snapshot_of
from runs.engine.serial_saver import LIST_PAGE, UnreadableCheckpoint
from runs.engine.serialization import to_jsonable
from threads.models import Thread

#: `as_node` values LangGraph accepts besides the graph's own nodes.
SPECIAL_AS_NODES = ("__input__", "__copy__", "__end__")


# --- Shapes -----------------------------------------------------------------------------------


def _checkpoint_of(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `Checkpoint` a checkpoint config points at, or None if it points at none."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    checkpoint = {
        "thread_id": configurable["thread_id"],
        "checkpoint_ns": configurable.get("checkpoint_ns") or "",
        "checkpoint_id": configurable["checkpoint_id"],
    }
    if "checkpoint_map" in configurable:
        checkpoint["checkpoint_map"] = configurable["checkpoint_map"]
    return checkpoint


def interrupt_payload(interrupt: Any) -> dict[str, Any]:
    """An interrupt as the SDK's `Interrupt`: {value, id} (and response_schema when given)."""
    payload = {"value": interrupt.value, "id": interrupt.id}
    if isinstance(getattr(interrupt, "response_schema", None), dict):
        payload["response_schema"] = interrupt.response_schema
    return payload


def _error_text(error: BaseException | str | None) -> str | None:
    """A task's error as the LangGraph server answers it: the exception's repr.

    A checkpoint saver stores a failed task's exception as its repr (LangGraph's serializer), so a
    snapshot read back holds that text already; an exception object is made the same text.
    """
    if error is None or isinstance(error, str):
        return error
    return repr(error)


def _task_payload(task: Any) -> dict[str, Any]:
    nested = task.state
    return {
        "id": task.id,
        "name": task.name,
        "path": task.path,
        "error": _error_text(task.error),
        "interrupts": [interrupt_payload(i) for i in task.interrupts],
        "checkpoint": (
            nested.get("configurable")
            if nested is not None and not isinstance(nested, StateSnapshot)
            else None
        ),
        "state": _state_payload(nested) if isinstance(nested, StateSnapshot) else None,
        "result": task.result,
    }


def _state_payload(snapshot: StateSnapshot) -> dict[str, Any]:
    return {
        "values": snapshot.values,
        "next": list(snapshot.next),
        "tasks": [_task_payload(task) for task in snapshot.tasks],
        # LangGraph copies string config values into checkpoint metadata: keep secrets out.
        "metadata": redact_secrets(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "checkpoint": _checkpoint_of(snapshot.config),
        "parent_checkpoint": _checkpoint_of(snapshot.parent_config),
        "interrupts": [interrupt_payload(i) for i in snapshot.interrupts],
    }


def thread_state(snapshot: StateSnapshot) -> dict[str, Any]:
    """A LangGraph `StateSnapshot` as the JSON `ThreadState` of the API."""
    return to_jsonable(_state_payload(snapshot))


def empty_thread_state() -> dict[str, Any]:
    """The state of a thread that has no checkpoint yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": {},
        "created_at": None,
        "checkpoint": None,
        "parent_checkpoint": None,
        "interrupts": [],
    }


# --- The graph and its config ---------------------------------------------------------------


async def _graph_of(thread: Thread) -> Any | None:
    """The thread's graph bound to the checkpointer, or None when no run has stamped one yet."""
    graph_id = (thread.metadata or {}).get("graph_id")
    if not graph_id:
        return None
    try:
        if not isinstance(graph_id, str):  # metadata is the client's to patch
            raise AssistantNotFound()
        spec = registry.resolve_assistant(graph_id)
    except AssistantNotFound:
        raise GraphNotRegistered(f"The thread's graph {graph_id!r} is not registered.") from None
    return await registry.graph_for_thread(spec.graph_id)


def _state_config(
    thread: Thread,
    *,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Checkpointer config for the thread; a client's `checkpoint.thread_id` is never trusted."""
    configurable: dict[str, Any] = {"thread_id": thread.thread_id, "checkpoint_ns": ""}
    for key in ("checkpoint_ns", "checkpoint_id", "checkpoint_map"):
        if (checkpoint or {}).get(key) is not None:
            configurable[key] = checkpoint[key]  # type: ignore[index]
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    configurable.update(extra)
    return {"configurable": configurable}


def _asks_for_checkpoint(config: dict[str, Any]) -> bool:
    return bool(config["configurable"].get("checkpoint_id"))


@contextlib.contextmanager
def _loaded() -> Iterator[None]:
    """A checkpoint that does not load (UnreadableCheckpoint) as a DamagedCheckpoint: a 409
    that names the problem."""
    try:
        yield
    except UnreadableCheckpoint as exc:
        raise DamagedCheckpoint(str(exc)) from None


async def _snapshot(graph: Any, config: dict[str, Any], *, subgraphs: bool = False) -> Any:
    """The graph's snapshot at `config`; 404 when a named checkpoint does not exist, 409
    (DamagedCheckpoint, naming the problem) when it does not load."""
    with _loaded():
        snapshot = await graph.aget_state(config, subgraphs=subgraphs)
    if _asks_for_checkpoint(config) and snapshot.created_at is None:
        raise CheckpointNotFound()
    return snapshot


# --- Reads ------------------------------------------------------------------------------------


async def get_thread_state(
    *,
    thread: Thread,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
    subgraphs: bool = False,
) -> dict[str, Any]:
    """The thread's latest state, or its state at a checkpoint (404 if unknown)."""
    graph = await _graph_of(thread)
    config = _state_config(thread, checkpoint=checkpoint, checkpoint_id=checkpoint_id)
    if graph is None:
        if _asks_for_checkpoint(config):
            raise CheckpointNotFound()
        return empty_thread_state()
    snapshot = await _snapshot(graph, config, subgraphs=subgraphs)
    if snapshot.created_at is None:
        return empty_thread_state()
    return thread_state(snapshot)


async def get_thread_history(
    *,
    thread: Thread,
    limit: int = 10,
    before: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    checkpoint: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The thread's states, newest first: at most `limit`, older than the checkpoint `before`
    (a Checkpoint naming a `checkpoint_id`, deerflow_site.api.checkpoints).

    Raises UnknownBeforeCheckpoint (422) when `before` names no checkpoint of the thread: a
    client paging with a stale id must not get the first page again. A checkpoint that does not
    load (damaged, or written by an older version) is left out (`_readable_history`).
    """
    graph = await _graph_of(thread)
    if graph is None and before:
        raise UnknownBeforeCheckpoint()
    if graph is None:
        return []
    config = _state_config(thread, checkpoint=checkpoint)
    config["configurable"].pop("checkpoint_id", None)  # the namespace only: history lists them all
    before_config = None
    if before:
        before_config = _state_config(thread, checkpoint={**(checkpoint or {}), **before})
        if not await graph.checkpointer.alist_ids(before_config, limit=1):
            raise UnknownBeforeCheckpoint()
    try:
        return [
            thread_state(snapshot)
            async for snapshot in graph.aget_state_history(
                config, filter=metadata or None, before=before_config, limit=limit
            )
        ]
    except UnreadableCheckpoint:
        return await _readable_history(graph, config, metadata, before_config, limit)


async def _readable_history(
    graph: Any,
    config: dict[str, Any],
    metadata: dict[str, Any] | None,
    before: dict[str, Any] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """`get_thread_history`'s states when one of them does not load: the checkpoints' ids read
    without their values, then each state read alone (as the one just older than the one
    listed before it), those that do not load left out."""
    states: list[dict[str, Any]] = []
    while len(states) < limit:
        ids = await graph.checkpointer.alist_ids(
            config, filter=metadata or None, before=before, limit=LIST_PAGE
        )
        for checkpoint_id in ids:
            try:
                async for snapshot in graph.aget_state_history(
                    config, filter=metadata or None, before=before, limit=1
                ):
                    states.append(thread_state(snapshot))
            except UnreadableCheckpoint:
                pass
            before = {"configurable": {**config["configurable"], "checkpoint_id": checkpoint_id}}
            if len(states) == limit:
                break
        if len(ids) < LIST_PAGE:
            break
    return states


# --- Writes -----------------------------------------------------------------------------------


def _valid_as_node(graph: Any, as_node: str | None) -> None:
    if as_node is not None and as_node not in graph.nodes and as_node not in SPECIAL_AS_NODES:
        raise Invalid({"as_node": [f"The graph has no node {as_node!r}."]})


async def update_state(
    *,
    thread: Thread,
    values: dict[str, Any] | list[Any] | None,
    as_node: str | None = None,
    checkpoint: dict[str, Any] | None = None,
    checkpoint_id: str | None = None,
    user: Any = None,
) -> tuple[dict[str, Any], ThreadSnapshot] | None:
    """Write `values` into the thread's state as if `as_node` had run.

    Returns the new checkpoint (`{thread_id, checkpoint_ns, checkpoint_id}`) and the thread's
    latest state; None when the thread has no graph yet. 404 for an unknown checkpoint, 422 for
    values or a node the graph cannot take, 400 when LangGraph refuses the update, 409 when the
    checkpoint it starts from does not load (DamagedCheckpoint).
    """
    graph = await _graph_of(thread)
    if graph is None:
        return None
    _valid_as_node(graph, as_node)
    # Recorded in the new checkpoint's metadata, as the engine records them for runs.
    server_keys = {key: thread.metadata.get(key) for key in ("graph_id", "assistant_id")}
    if user is not None:
        server_keys["user_id"] = str(user.pk)
    config = _state_config(
        thread,
        checkpoint=checkpoint,
        checkpoint_id=checkpoint_id,
        **{key: value for key, value in server_keys.items() if isinstance(value, str)},
    )
    if _asks_for_checkpoint(config):
        await _snapshot(graph, config)  # 404 for an unknown checkpoint
    try:
        with _loaded():
            written = await graph.aupdate_state(config, values, as_node=as_node)
    except InvalidUpdateError as exc:
        raise BadRequest(str(exc)) from None
    except (ValueError, TypeError, NotImplementedError) as exc:  # what the graph cannot apply
        field = "checkpoint" if config["configurable"]["checkpoint_ns"] else "values"
        raise Invalid({field: [str(exc)]}) from None
    with _loaded():
        latest = await snapshot_of(graph, thread.thread_id)
    return to_jsonable(_checkpoint_of(written)), latest


async def copy_state(*, source: Thread, target_thread_id: str) -> ThreadSnapshot | None:
    """Copy every checkpoint of `source` to the thread `target_thread_id`; the copy's latest
    state, or None when the source's graph is unknown (the checkpoints are copied all the same).

    On failure (a 409 when a checkpoint of the source does not load) the caller removes the copy
    with `adelete_thread_checkpoints`.
    """
    try:
        graph = await _graph_of(source)
    except GraphNotRegistered:
        graph = None
    with _loaded():
        await checkpoints.acopy_thread_checkpoints(source.thread_id, target_thread_id)
        if graph is None:
            return None
        return await snapshot_of(graph, target_thread_id)
